//! The OpenAPI 3 document, generated from the handlers' `#[utoipa::path]` annotations so
//! that it follows the code. Served at `/openapi.json` and checked by schemathesis in CI.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{batch, blobs, error, kv, list, ops};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "cask HTTP API",
        description = "The cask database over HTTP: the same keys as the Redis server's database 0. See docs/HTTP.md.",
    ),
    paths(
        kv::get_key, kv::head_key, kv::put_key, kv::delete_key,
        list::list, batch::batch,
        blobs::post_blob, blobs::get_blob, blobs::delete_blob, blobs::list_blobs,
        ops::health, ops::metrics, ops::openapi_json,
    ),
    components(schemas(
        error::ErrorBody, kv::PutResult, kv::RawBytes, list::Page, list::Entry,
        batch::BatchRequest, batch::BatchOp, batch::Data, batch::BatchResult, list::Encoding,
        blobs::BlobMeta, ops::Health,
    )),
    modifiers(&Bearer),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

/// Declares the bearer scheme used with `--requirepass`.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}
