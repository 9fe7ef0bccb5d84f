//! Fuzz target `resp_parser`: the logic lives in `cask::fuzz_support::resp_parser` so that `cargo test` replays this
//! target's corpus (`fuzz/corpus/resp_parser/`) on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cask::fuzz_support::resp_parser(data));
