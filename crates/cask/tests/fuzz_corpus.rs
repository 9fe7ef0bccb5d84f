//! Replays every input kept in `fuzz/corpus/resp_parser/` (the cargo-fuzz corpus,
//! minimised with `cargo fuzz cmin`) through the function the fuzz target calls, so a
//! stable `cargo test` re-checks every finding. The fuzzer runs on nightly: see
//! docs/RELIABILITY.md.

use std::path::PathBuf;

#[test]
fn resp_parser_corpus() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/resp_parser");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(files.len() >= 5, "corpus has only {} inputs", files.len());
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        let r = std::panic::catch_unwind(|| cask::fuzz_support::resp_parser(&bytes));
        assert!(r.is_ok(), "{} failed", path.display());
    }
    eprintln!("resp_parser: replayed {} inputs", files.len());
}

/// The target really compares split and unsplit parses: a stream of two requests split
/// at every byte parses the same, and a malformed one ends in the same error.
#[test]
fn resp_parser_seeds_exercise_the_checks() {
    for stream in [
        &b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n*1\r\n$4\r\nPING\r\n"[..],
        b"*1\r\n$-5\r\n",
        b"*2\r\n$3\r\nSET\r\n$99999999999\r\n",
        b"SET \"a b\" 'c'\r\n\r\n*0\r\n",
    ] {
        for seed in 0..=255u8 {
            let mut input = vec![1, seed];
            input.extend_from_slice(stream);
            cask::fuzz_support::resp_parser(&input);
        }
    }
}
