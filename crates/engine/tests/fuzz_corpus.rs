//! Replays every input kept in `fuzz/corpus/{data_dir,stateful}/` (the cargo-fuzz corpora,
//! minimised with `cargo fuzz cmin`) through the same functions the fuzz targets call, so
//! a stable `cargo test` re-checks every finding and every interesting input. The fuzzers
//! themselves run on nightly: see docs/RELIABILITY.md.

use std::path::PathBuf;

use cask_engine::fuzz_support;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

fn replay(target: &str, f: fn(&[u8])) {
    let inputs = corpus(target);
    assert!(
        inputs.len() >= 5,
        "{target}: corpus has only {} inputs",
        inputs.len()
    );
    for (path, bytes) in &inputs {
        let r = std::panic::catch_unwind(|| f(bytes));
        assert!(r.is_ok(), "{target}: {} failed", path.display());
    }
    eprintln!("{target}: replayed {} inputs", inputs.len());
}

#[test]
fn data_dir_corpus() {
    replay("data_dir", fuzz_support::data_dir);
}

#[test]
fn stateful_corpus() {
    replay("stateful", fuzz_support::stateful);
}

/// Real database directories decode to the files they were made of.
#[test]
fn data_dir_encoding_round_trips() {
    let files = fuzz_support::sample_dir(3, 1024);
    assert!(files.len() >= 3, "{files:?}");
    let (flags, decoded) = fuzz_support::decode_dir(&fuzz_support::encode_dir(5, &files));
    assert_eq!(flags, 5);
    // `encode_dir` keeps segment and hint files with ids 1 to 8, at most eight of them.
    let encodable = |n: &str| {
        let stem = n.strip_suffix(".seg").or_else(|| n.strip_suffix(".hint"));
        stem.and_then(|s| s.parse::<u32>().ok())
            .is_some_and(|id| (1..=8).contains(&id))
    };
    let want: Vec<_> = files
        .into_iter()
        .filter(|(n, _)| encodable(n))
        .take(8)
        .collect();
    assert_eq!(decoded, want);
}

/// Writes the seed inputs (real directories and operation sequences) into the corpus
/// directories: `cargo test -p cask-engine --test fuzz_corpus -- --ignored write_seeds`.
#[test]
#[ignore = "writes seed files into fuzz/corpus"]
fn write_seeds() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let dd = root.join("data_dir");
    std::fs::create_dir_all(&dd).unwrap();
    for (i, seg) in [(0u64, 512u64), (1, 1024), (2, 4096), (3, 1024), (4, 2048)] {
        let files = fuzz_support::sample_dir(i, seg);
        for flags in [0u8, 1, 4] {
            let bytes = fuzz_support::encode_dir(flags, &files);
            std::fs::write(dd.join(format!("seed-{i}-{flags}")), bytes).unwrap();
        }
    }
    let st = root.join("stateful");
    std::fs::create_dir_all(&st).unwrap();
    for seed in 0..12u64 {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let bytes: Vec<u8> = (0..(64 + seed * 32))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(st.join(format!("seed-{seed}")), bytes).unwrap();
    }
}
