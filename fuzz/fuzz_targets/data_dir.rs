//! Fuzz target `data_dir`: the logic lives in `cask_engine::fuzz_support::data_dir` so that `cargo test` replays this
//! target's corpus (`fuzz/corpus/data_dir/`) on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cask_engine::fuzz_support::data_dir(data));
