//! Fuzz target `stateful`: the logic lives in `cask_engine::fuzz_support::stateful` so that `cargo test` replays this
//! target's corpus (`fuzz/corpus/stateful/`) on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cask_engine::fuzz_support::stateful(data));
