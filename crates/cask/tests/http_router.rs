//! In-process tests of the HTTP API's router: every route, status code and error path.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode, header};
use cask::config::{ServeArgs, ServerConfig};
use cask::server::{Shared, new_shared};
use cask_engine::{Db, Options, SyncPolicy};
use http_body_util::BodyExt;
use serde_json::Value as Json;
use tower::ServiceExt;

struct App {
    _dir: tempfile::TempDir,
    shared: Arc<Shared>,
    router: Router,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Json {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
            .to_string()
    }
    /// Errors are JSON `{"error": "..."}`; returns the message.
    fn error(&self) -> String {
        assert_eq!(
            self.headers.get(header::CONTENT_TYPE).unwrap(),
            "application/json"
        );
        self.json()["error"]
            .as_str()
            .expect("error field")
            .to_string()
    }
}

fn app_with(opts: Options, args: ServeArgs) -> App {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts).unwrap();
    let config = ServerConfig::resolve(&args).unwrap();
    let shared = new_shared(db, config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let router = cask::http::router(shared.clone());
    App {
        _dir: dir,
        shared,
        router,
    }
}

fn app() -> App {
    app_with(
        Options::default().sync(SyncPolicy::Never),
        ServeArgs::default(),
    )
}

impl App {
    async fn send(&self, req: Request<Body>) -> Reply {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn req(&self, method: &str, uri: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let mut b = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.send(b.body(Body::from(body.to_vec())).unwrap()).await
    }

    async fn get(&self, uri: &str) -> Reply {
        self.req("GET", uri, &[], b"").await
    }

    async fn put(&self, uri: &str, body: &[u8]) -> Reply {
        self.req("PUT", uri, &[], body).await
    }
}

#[tokio::test]
async fn put_get_head_delete_round_trip() {
    let app = app();
    let r = app.put("/v1/kv/greeting", b"hello").await;
    assert_eq!(r.status, StatusCode::CREATED);
    let v1 = r.json()["version"].as_u64().unwrap();
    assert_eq!(r.header("etag"), format!("\"{v1}\""));
    assert_eq!(r.header("location"), "/v1/kv/greeting");
    assert_eq!(r.json()["created"], true);

    let r = app.get("/v1/kv/greeting").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(&r.body[..], b"hello");
    assert_eq!(r.header("etag"), format!("\"{v1}\""));
    assert_eq!(r.header("content-type"), "application/octet-stream");

    let r = app.put("/v1/kv/greeting", b"hello again").await;
    assert_eq!(r.status, StatusCode::OK);
    let v2 = r.json()["version"].as_u64().unwrap();
    assert!(v2 > v1);
    assert_eq!(r.json()["created"], false);

    let r = app.req("HEAD", "/v1/kv/greeting", &[], b"").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-length"), "11");
    assert_eq!(r.header("etag"), format!("\"{v2}\""));

    // The same key as the RESP server's database 0 string.
    let s = app.shared.store.get_string(0, b"greeting").unwrap();
    assert_eq!(s.as_deref(), Some(&b"hello again"[..]));

    let r = app.req("DELETE", "/v1/kv/greeting", &[], b"").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = app.get("/v1/kv/greeting").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error(), "key not found");
    let r = app.req("DELETE", "/v1/kv/greeting", &[], b"").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error(), "key not found");
    let r = app.req("HEAD", "/v1/kv/greeting", &[], b"").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn keys_are_percent_decoded_bytes_and_may_contain_slashes() {
    let app = app();
    assert_eq!(
        app.put("/v1/kv/a/b", b"1").await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        app.put("/v1/kv/%FF%00x", b"2").await.status,
        StatusCode::CREATED
    );
    let st = &app.shared.store;
    assert_eq!(
        st.get_string(0, b"a/b").unwrap().as_deref(),
        Some(&b"1"[..])
    );
    assert_eq!(
        st.get_string(0, b"\xff\x00x").unwrap().as_deref(),
        Some(&b"2"[..])
    );
    assert_eq!(&app.get("/v1/kv/a%2Fb").await.body[..], b"1");
    // Values set through the store (as RESP SET does) are read back.
    st.put_string(0, b"from-resp", b"\x00bin\xff", None)
        .unwrap();
    assert_eq!(&app.get("/v1/kv/from-resp").await.body[..], b"\x00bin\xff");
}

#[tokio::test]
async fn conditional_reads_give_304_and_412() {
    let app = app();
    let v = app.put("/v1/kv/k", b"v").await.json()["version"]
        .as_u64()
        .unwrap();
    let tag = format!("\"{v}\"");
    let r = app
        .req("GET", "/v1/kv/k", &[("if-none-match", &tag)], b"")
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert_eq!(r.header("etag"), tag);
    assert!(r.body.is_empty());
    let r = app
        .req(
            "GET",
            "/v1/kv/k",
            &[("if-none-match", "\"999\", W/\"1000\"")],
            b"",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app
        .req("GET", "/v1/kv/k", &[("if-match", "\"999\"")], b"")
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(r.error(), "precondition failed");
    let r = app.req("GET", "/v1/kv/k", &[("if-match", &tag)], b"").await;
    assert_eq!(r.status, StatusCode::OK);
    // A missing key never matches If-Match.
    let r = app
        .req("GET", "/v1/kv/none", &[("if-match", "*")], b"")
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    let r = app
        .req("HEAD", "/v1/kv/k", &[("if-none-match", "*")], b"")
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    for junk in ["\"unclosed", "\"1\",,", "", "\"a b\""] {
        let r = app.req("GET", "/v1/kv/k", &[("if-match", junk)], b"").await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{junk:?} is not a tag list"
        );
        let r = app
            .req("PUT", "/v1/kv/k", &[("if-none-match", junk)], b"x")
            .await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{junk:?} is not a tag list"
        );
    }
    assert_eq!(&app.get("/v1/kv/k").await.body[..], b"v");
    // Bare tokens are tags whose quotes were left out.
    let r = app
        .req("GET", "/v1/kv/k", &[("if-match", "junk")], b"")
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    let bare = format!("{v}");
    let r = app
        .req("GET", "/v1/kv/k", &[("if-none-match", &bare)], b"")
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    let r = app
        .req("GET", "/v1/kv/k", &[("if-match", "caf\u{e9}")], b"")
        .await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "a header that is not ASCII"
    );
    assert!(r.error().contains("if-match"));
}

#[tokio::test]
async fn conditional_writes_are_compare_and_set() {
    let app = app();
    // Create-only.
    let r = app
        .req("PUT", "/v1/kv/c", &[("if-none-match", "*")], b"first")
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let v1 = r.json()["version"].as_u64().unwrap();
    let r = app
        .req("PUT", "/v1/kv/c", &[("if-none-match", "*")], b"second")
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(&app.get("/v1/kv/c").await.body[..], b"first");
    // Update only from the version read.
    let tag1 = format!("\"{v1}\"");
    let r = app
        .req("PUT", "/v1/kv/c", &[("if-match", &tag1)], b"second")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let v2 = r.json()["version"].as_u64().unwrap();
    let r = app
        .req("PUT", "/v1/kv/c", &[("if-match", &tag1)], b"stale")
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(&app.get("/v1/kv/c").await.body[..], b"second");
    // If-Match: * on a missing key.
    let r = app
        .req("PUT", "/v1/kv/missing", &[("if-match", "*")], b"x")
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        app.get("/v1/kv/missing").await.status,
        StatusCode::NOT_FOUND
    );
    // Conditional delete.
    let r = app
        .req("DELETE", "/v1/kv/c", &[("if-match", &tag1)], b"")
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    let r = app
        .req(
            "DELETE",
            "/v1/kv/c",
            &[("if-match", &format!("\"{v2}\""))],
            b"",
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get("/v1/kv/c").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn concurrent_conditional_puts_let_exactly_one_win() {
    let app = app();
    let v = app.put("/v1/kv/race", b"0").await.json()["version"]
        .as_u64()
        .unwrap();
    let tag = format!("\"{v}\"");
    let mut tasks = Vec::new();
    for i in 0..8 {
        let router = app.router.clone();
        let tag = tag.clone();
        tasks.push(tokio::spawn(async move {
            let req = Request::builder()
                .method("PUT")
                .uri("/v1/kv/race")
                .header("if-match", tag)
                .body(Body::from(format!("w{i}")))
                .unwrap();
            router.oneshot(req).await.unwrap().status()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::PRECONDITION_FAILED => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ok, 1, "exactly one writer holding the version wins");
}

#[tokio::test]
async fn ttl_from_query_or_header_and_bad_ttls() {
    let app = app();
    let now = app.shared.store.db.now_ms();
    let r = app.put("/v1/kv/t?ttl=30s", b"x").await;
    assert_eq!(r.status, StatusCode::CREATED);
    let at: u64 = app
        .get("/v1/kv/t")
        .await
        .header("cask-expires-at")
        .parse()
        .unwrap();
    assert!(
        at >= now + 29_000 && at <= now + 31_000 + 5_000,
        "{at} vs {now}"
    );
    let meta = app.shared.store.meta(0, b"t").unwrap().unwrap();
    assert_eq!(meta.expire_at, Some(at));
    let r = app
        .req("PUT", "/v1/kv/t2", &[("cask-ttl", "2")], b"x")
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert!(
        app.shared
            .store
            .meta(0, b"t2")
            .unwrap()
            .unwrap()
            .expire_at
            .is_some()
    );
    // A PUT without a TTL clears it, like SET.
    app.put("/v1/kv/t2", b"y").await;
    assert_eq!(
        app.shared.store.meta(0, b"t2").unwrap().unwrap().expire_at,
        None
    );
    assert!(
        app.get("/v1/kv/t2")
            .await
            .headers
            .get("cask-expires-at")
            .is_none()
    );
    for bad in ["/v1/kv/t3?ttl=soon", "/v1/kv/t3?ttl=0", "/v1/kv/t3?ttl=-5"] {
        let r = app.put(bad, b"x").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(r.error().contains("invalid ttl"));
    }
    let r = app
        .req("PUT", "/v1/kv/t3", &[("cask-ttl", "never")], b"x")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.get("/v1/kv/t3").await.status, StatusCode::NOT_FOUND);
    // An expired key is gone.
    let r = app.put("/v1/kv/short?ttl=1ms", b"x").await;
    assert_eq!(r.status, StatusCode::CREATED);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(app.get("/v1/kv/short").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn keys_of_other_types_are_wrongtype() {
    let app = app();
    // A value with another type tag, as the RESP server stores hashes, lists, ...
    app.shared.store.put(0, b"h", 7, b"meta", None).unwrap();
    let r = app.get("/v1/kv/h").await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.error().starts_with("WRONGTYPE"));
    let r = app.req("PUT", "/v1/kv/h", &[("if-match", "*")], b"x").await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = app
        .req("DELETE", "/v1/kv/h", &[("if-match", "*")], b"")
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(app.get("/blobs/h").await.status, StatusCode::CONFLICT);
    // Still there, untouched.
    assert_eq!(app.shared.store.get(0, b"h").unwrap().unwrap().tag, 7);
    // Listed with its type and no value.
    let page = app.get("/v1/kv").await.json();
    let item = &page["items"][0];
    assert_eq!(item["key"], "h");
    assert_ne!(item["type"], "string");
    assert!(item.get("value").is_none());
}

async fn fill(app: &App, keys: &[&str]) {
    for k in keys {
        assert_eq!(
            app.put(&format!("/v1/kv/{k}"), format!("v-{k}").as_bytes())
                .await
                .status,
            StatusCode::CREATED
        );
    }
}

fn keys_of(page: &Json) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn listing_orders_filters_and_paginates() {
    let app = app();
    fill(&app, &["b", "a", "user:2", "user:1", "user:3", "z"]).await;
    let page = app.get("/v1/kv").await.json();
    assert_eq!(
        keys_of(&page),
        ["a", "b", "user:1", "user:2", "user:3", "z"]
    );
    assert_eq!(page["items"][0]["value"], "v-a");
    assert_eq!(page["items"][0]["type"], "string");
    assert!(page["items"][0]["version"].as_u64().unwrap() > 0);
    assert!(page["next_cursor"].is_null());

    let page = app.get("/v1/kv?prefix=user:").await.json();
    assert_eq!(keys_of(&page), ["user:1", "user:2", "user:3"]);
    let page = app.get("/v1/kv?start=b&end=user%3A3").await.json();
    assert_eq!(keys_of(&page), ["b", "user:1", "user:2"]);
    let page = app.get("/v1/kv?reverse=true&limit=2").await.json();
    assert_eq!(keys_of(&page), ["z", "user:3"]);

    // Every page, forward and reverse, covers the keys exactly once.
    for reverse in [false, true] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut uri = format!("/v1/kv?limit=2&reverse={reverse}");
            if let Some(c) = &cursor {
                uri.push_str(&format!("&cursor={c}"));
            }
            let page = app.get(&uri).await.json();
            seen.extend(keys_of(&page));
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        let mut want = vec!["a", "b", "user:1", "user:2", "user:3", "z"];
        if reverse {
            want.reverse();
        }
        assert_eq!(seen, want, "reverse={reverse}");
    }

    let page = app.get("/v1/kv?keys_only=true&prefix=user").await.json();
    assert_eq!(keys_of(&page), ["user:1", "user:2", "user:3"]);
    assert!(page["items"][0].get("value").is_none());
    assert!(page["items"][0]["version"].as_u64().is_some());
}

#[tokio::test]
async fn listing_is_binary_safe() {
    let app = app();
    app.put("/v1/kv/%FFbin", b"\xfe\x00").await;
    app.put("/v1/kv/text", b"plain").await;
    let page = app.get("/v1/kv").await.json();
    assert_eq!(page["items"][0]["key"], "text");
    assert_eq!(page["items"][0]["value"], "plain");
    assert_eq!(page["items"][1]["key_base64"], "/2Jpbg==");
    assert_eq!(page["items"][1]["value_base64"], "/gA=");
    assert!(page["items"][1].get("key").is_none());
    let page = app.get("/v1/kv?encoding=base64").await.json();
    assert_eq!(page["items"][0]["key_base64"], "dGV4dA==");
    assert_eq!(page["items"][0]["value_base64"], "cGxhaW4=");
    // Binary prefixes are percent-encoded.
    let page = app.get("/v1/kv?prefix=%FF").await.json();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn listing_rejects_bad_parameters() {
    let app = app();
    fill(&app, &["a", "b", "c"]).await;
    for bad in [
        "/v1/kv?limit=0",
        "/v1/kv?limit=-1",
        "/v1/kv?limit=abc",
        "/v1/kv?reverse=maybe",
        "/v1/kv?keys_only=2",
        "/v1/kv?encoding=hex",
        "/v1/kv?cursor=!!!",
        "/v1/kv?cursor=A",
        "/v1/kv?cursor=a%2Bb",
    ] {
        let r = app.get(bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(!r.error().is_empty());
    }
    // An empty cursor is the start; a cursor continues after its key in either direction.
    assert_eq!(
        keys_of(&app.get("/v1/kv?cursor=").await.json()),
        ["a", "b", "c"]
    );
    let page = app.get("/v1/kv?limit=2").await.json();
    let c = page["next_cursor"].as_str().unwrap().to_string();
    assert_eq!(
        keys_of(&app.get(&format!("/v1/kv?cursor={c}")).await.json()),
        ["c"]
    );
    let page = app
        .get(&format!("/v1/kv?reverse=true&cursor={c}"))
        .await
        .json();
    assert_eq!(keys_of(&page), ["a"]);
}

#[tokio::test]
async fn list_limit_is_configurable() {
    let app = app_with(
        Options::default().sync(SyncPolicy::Never),
        ServeArgs {
            http_max_list_limit: Some(2),
            ..ServeArgs::default()
        },
    );
    fill(&app, &["a", "b", "c"]).await;
    let page = app.get("/v1/kv?limit=3").await.json();
    assert_eq!(
        keys_of(&page),
        ["a", "b"],
        "larger pages are cut to the limit"
    );
    assert!(page["next_cursor"].is_string());
    let page = app.get("/v1/kv").await.json();
    assert_eq!(keys_of(&page), ["a", "b"], "the default page is capped too");
    let blobs = app.get("/blobs").await.json();
    assert_eq!(blobs.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn batch_is_atomic_and_conditional() {
    let app = app();
    fill(&app, &["old"]).await;
    let body = serde_json::json!({"ops": [
        {"op": "put", "key": "x", "value": "1"},
        {"op": "put", "key": {"base64": "/w=="}, "value": {"base64": "AAE"}, "ttl": "1h"},
        {"op": "delete", "key": "old"},
    ]});
    let r = app
        .req(
            "POST",
            "/v1/batch",
            &[("content-type", "application/json")],
            body.to_string().as_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let version = r.json()["version"].as_u64().unwrap();
    assert_eq!(r.json()["applied"], 3);
    let st = &app.shared.store;
    assert_eq!(st.get_string(0, b"x").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(
        st.get_string(0, b"\xff").unwrap().as_deref(),
        Some(&b"\x00\x01"[..])
    );
    assert!(st.meta(0, b"\xff").unwrap().unwrap().expire_at.is_some());
    assert_eq!(st.get(0, b"old").unwrap().map(|v| v.tag), None);
    assert_eq!(st.meta(0, b"x").unwrap().unwrap().version, version);

    // A failed condition applies nothing.
    let body = serde_json::json!({"ops": [
        {"op": "put", "key": "y", "value": "2"},
        {"op": "delete", "key": "x", "if_version": version + 100},
    ]});
    let r = app
        .req("POST", "/v1/batch", &[], body.to_string().as_bytes())
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    assert!(r.error().contains("precondition failed"));
    assert!(st.get(0, b"y").unwrap().is_none());
    assert!(st.get(0, b"x").unwrap().is_some());
    let body =
        serde_json::json!({"ops": [{"op": "put", "key": "x", "value": "3", "if_version": 0}]});
    let r = app
        .req("POST", "/v1/batch", &[], body.to_string().as_bytes())
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    let body = serde_json::json!({"ops": [{"op": "put", "key": "x", "value": "3", "if_version": version}]});
    let r = app
        .req("POST", "/v1/batch", &[], body.to_string().as_bytes())
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(st.get_string(0, b"x").unwrap().as_deref(), Some(&b"3"[..]));
    // JSON Schema integers may carry a zero fraction.
    let body = format!(
        r#"{{"ops": [{{"op": "delete", "key": "x", "if_version": {}.0}}]}}"#,
        version + 1000
    );
    let r = app.req("POST", "/v1/batch", &[], body.as_bytes()).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{:?}", r.body);
    let body =
        serde_json::json!({"ops": [{"op": "put", "key": "fresh", "value": "", "if_version": 0}]});
    let r = app
        .req("POST", "/v1/batch", &[], body.to_string().as_bytes())
        .await;
    assert_eq!(r.status, StatusCode::OK, "if_version 0: only if absent");
    assert_eq!(
        st.get_string(0, b"fresh").unwrap().as_deref(),
        Some(&b""[..])
    );
}

#[tokio::test]
async fn malformed_batches_are_400() {
    let app = app();
    for bad in [
        "not json",
        "{}",
        r#"{"ops": []}"#,
        r#"{"ops": [{"op": "put", "key": "a"}]}"#,
        r#"{"ops": [{"op": "zap", "key": "a"}]}"#,
        r#"{"ops": [{"op": "put", "value": "v"}]}"#,
        r#"{"ops": [{"key": "a", "value": "v"}]}"#,
        r#"{"ops": [{"op": "put", "key": {"base64": "***"}, "value": "v"}]}"#,
        r#"{"ops": [{"op": "put", "key": {"hex": "00"}, "value": "v"}]}"#,
        r#"{"ops": [{"op": "put", "key": "a", "value": "v", "ttl": "soon"}]}"#,
        r#"{"ops": [{"op": "put", "key": "a", "value": "v", "if_version": -1}]}"#,
        r#"{"ops": [], "more": 1}"#,
    ] {
        let r = app.req("POST", "/v1/batch", &[], bad.as_bytes()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(!r.error().is_empty());
    }
    assert!(app.shared.store.get(0, b"a").unwrap().is_none());
}

fn small_values() -> App {
    let mut opts = Options::default().sync(SyncPolicy::Never);
    opts.max_value_size = 101; // 100 bytes + the type tag
    app_with(opts, ServeArgs::default())
}

#[tokio::test]
async fn bodies_over_the_value_limit_are_413() {
    let app = small_values();
    assert_eq!(
        app.put("/v1/kv/fits", &[b'x'; 100]).await.status,
        StatusCode::CREATED
    );
    let r = app.put("/v1/kv/big", &[b'x'; 101]).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.error().contains("over the limit of 100 bytes"));
    // Announced too large: refused from the header, before the body is read (this body
    // would fail if it were polled).
    let failing = Body::from_stream(futures_stream_error());
    let req = Request::builder()
        .method("PUT")
        .uri("/v1/kv/big")
        .header("content-length", "1000000000")
        .body(failing)
        .unwrap();
    let r = app.send(req).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    // Chunked (no length): cut off once past the limit.
    let chunks: Vec<Result<Bytes, std::io::Error>> =
        (0..10).map(|_| Ok(Bytes::from(vec![b'y'; 50]))).collect();
    let req = Request::builder()
        .method("PUT")
        .uri("/v1/kv/big")
        .body(Body::from_stream(tokio_stream_iter(chunks)))
        .unwrap();
    let r = app.send(req).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(app.get("/v1/kv/big").await.status, StatusCode::NOT_FOUND);
    let r = app.req("POST", "/blobs/big", &[], &[b'x'; 101]).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    // A batch whose value is over the engine's limit.
    let body = serde_json::json!({"ops": [{"op": "put", "key": "b", "value": "z".repeat(200)}]});
    let r = app
        .req("POST", "/v1/batch", &[], body.to_string().as_bytes())
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
}

fn futures_stream_error() -> futures_core_stream::Iter {
    futures_core_stream::once_err()
}

fn tokio_stream_iter(items: Vec<Result<Bytes, std::io::Error>>) -> futures_core_stream::Iter {
    futures_core_stream::iter(items)
}

/// Minimal streams for request bodies.
mod futures_core_stream {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use axum::body::Bytes;

    pub use futures_core::Stream;

    pub struct Iter(std::vec::IntoIter<Result<Bytes, std::io::Error>>);

    impl Stream for Iter {
        type Item = Result<Bytes, std::io::Error>;
        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            Poll::Ready(self.0.next())
        }
    }

    pub fn iter(items: Vec<Result<Bytes, std::io::Error>>) -> Iter {
        Iter(items.into_iter())
    }

    pub fn once_err() -> Iter {
        Iter(vec![Err(std::io::Error::other("the body was read"))].into_iter())
    }
}

#[tokio::test]
async fn oversized_keys_are_400() {
    let app = app();
    // Over the engine's 64 KiB key limit (a URI that long is refused by the HTTP layer
    // itself, so the batch route carries it).
    let key = "k".repeat(70 * 1024);
    let body = serde_json::json!({"ops": [{"op": "put", "key": key, "value": "v"}]});
    let r = app
        .req("POST", "/v1/batch", &[], body.to_string().as_bytes())
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.error().contains("key"), "{}", r.error());
}

#[tokio::test]
async fn requirepass_needs_a_bearer_token_except_on_health() {
    let app = app_with(
        Options::default().sync(SyncPolicy::Never),
        ServeArgs {
            requirepass: Some("s3cret".into()),
            ..ServeArgs::default()
        },
    );
    for (method, uri) in [
        ("GET", "/v1/kv/a"),
        ("PUT", "/v1/kv/a"),
        ("DELETE", "/v1/kv/a"),
        ("GET", "/v1/kv"),
        ("POST", "/v1/batch"),
        ("GET", "/blobs"),
        ("POST", "/blobs/a"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
    ] {
        let r = app.req(method, uri, &[], b"x").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {uri}");
        assert_eq!(r.header("www-authenticate"), "Bearer");
        assert!(r.error().contains("Bearer"));
        let r = app
            .req(method, uri, &[("authorization", "Bearer wrong")], b"x")
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {uri}");
    }
    assert!(app.shared.store.get(0, b"a").unwrap().is_none());
    assert_eq!(app.get("/health").await.status, StatusCode::OK);
    let auth = [("authorization", "Bearer s3cret")];
    assert_eq!(
        app.req("PUT", "/v1/kv/a", &auth, b"x").await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        app.req("GET", "/v1/kv/a", &auth, b"").await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.req("GET", "/metrics", &auth, b"").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn blobs_routes_match_mini_kvstore_v2() {
    let app = app();
    let r = app.req("POST", "/blobs/photo", &[], b"jpegbytes").await;
    assert_eq!(r.status, StatusCode::CREATED);
    let meta = r.json();
    assert_eq!(meta["key"], "photo");
    assert_eq!(meta["size"], 9);
    let etag = meta["etag"].as_str().unwrap().to_string();
    assert_eq!(r.header("etag"), format!("\"{etag}\""));
    let r = app.get("/blobs/photo").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(&r.body[..], b"jpegbytes");
    // The same key as /v1/kv.
    assert_eq!(&app.get("/v1/kv/photo").await.body[..], b"jpegbytes");
    app.req("POST", "/blobs/another", &[], b"x").await;
    assert_eq!(
        app.get("/blobs").await.json(),
        serde_json::json!(["another", "photo"])
    );
    assert_eq!(
        app.req("DELETE", "/blobs/photo", &[], b"").await.status,
        StatusCode::NO_CONTENT
    );
    let r = app.get("/blobs/photo").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error(), "key not found");
    let r = app.req("DELETE", "/blobs/photo", &[], b"").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn health_metrics_and_openapi() {
    let app = app();
    let r = app.get("/health").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["status"], "ok");
    assert_eq!(r.json()["ready"], true);

    app.put("/v1/kv/m", b"1").await;
    app.get("/v1/kv/nothing").await;
    let r = app.get("/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.header("content-type")
            .starts_with("application/openmetrics-text")
    );
    let text = String::from_utf8(r.body.to_vec()).unwrap();
    for want in [
        "cask_commands_total{server=\"http\",command=\"PUT /v1/kv/{*key}\",result=\"ok\"} 1",
        "cask_commands_total{server=\"http\",command=\"GET /v1/kv/{*key}\",result=\"error\"} 1",
        "cask_http_responses_total{status=\"404\"} 1",
        "cask_command_duration_seconds_count{server=\"http\",command=\"PUT /v1/kv/{*key}\"} 1",
        "cask_commands_total{server=\"resp\",command=\"get\",result=\"ok\"} 0",
        "cask_keys 1",
        "cask_live_bytes ",
        "cask_dead_bytes ",
        "cask_compactions_total 0",
        "cask_fsync_duration_seconds_count ",
        "cask_connected_clients{server=\"resp\"} 0",
        "cask_connected_clients{server=\"http\"} 0",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }

    let doc = app.get("/openapi.json").await.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/v1/kv/{key}",
        "/v1/kv",
        "/v1/batch",
        "/blobs",
        "/blobs/{key}",
        "/health",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(paths.contains_key(p), "openapi lacks {p}");
    }
    let kv = &paths["/v1/kv/{key}"];
    for m in ["get", "head", "put", "delete"] {
        assert!(kv.get(m).is_some(), "openapi lacks {m} /v1/kv/{{key}}");
    }
    assert!(kv["put"]["responses"].get("412").is_some());
    // The patterns the document promises are the ones the code enforces.
    let param = |path: &str, method: &str, name: &str| -> String {
        paths[path][method]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{method} {path} lacks {name}"))["schema"]["pattern"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        param("/v1/kv/{key}", "put", "If-Match"),
        cask::http::kv::TAG_LIST_PATTERN
    );
    assert_eq!(
        param("/v1/kv/{key}", "get", "If-None-Match"),
        cask::http::kv::TAG_LIST_PATTERN
    );
    assert_eq!(
        param("/v1/kv/{key}", "put", "ttl"),
        cask::http::kv::TTL_PATTERN
    );
    assert_eq!(
        param("/v1/kv", "get", "cursor"),
        cask::http::list::CURSOR_PATTERN
    );
    assert!(kv["put"]["responses"].get("413").is_some());
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json_errors() {
    let app = app();
    let r = app.get("/nope").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.error().contains("no route"));
    let r = app.req("PATCH", "/v1/kv/a", &[], b"").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(r.error().contains("not allowed"));
}

#[tokio::test]
async fn a_closed_database_is_503_not_200() {
    let app = app();
    app.put("/v1/kv/a", b"1").await;
    app.shared.store.db.close().unwrap();
    let r = app.get("/v1/kv/a").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.error().contains("closed"));
    let r = app.put("/v1/kv/a", b"2").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn writes_wait_for_durability_under_sync_always() {
    let app = app_with(
        Options::default().sync(SyncPolicy::Always),
        ServeArgs::default(),
    );
    let before = app.shared.store.db.stats().syncs;
    assert_eq!(app.put("/v1/kv/d", b"1").await.status, StatusCode::CREATED);
    assert!(
        app.shared.store.db.stats().syncs > before,
        "the reply came after an fsync"
    );
    let before = app.shared.store.db.stats().syncs;
    let body = serde_json::json!({"ops": [{"op": "put", "key": "e", "value": "1"}]});
    let r = app
        .req("POST", "/v1/batch", &[], body.to_string().as_bytes())
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(app.shared.store.db.stats().syncs > before);
}
