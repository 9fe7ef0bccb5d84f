//! Sets, one engine record per element (see `server/coll.rs`).
