//! `cask torture` itself: a short run passes on a new directory, and a directory that
//! already holds files is refused (torture kills the server over and over and checks every
//! key in the directory, so it must never run on someone's data).

use assert_cmd::Command;
use predicates::prelude::*;

#[test]
fn short_run_passes() {
    let dir = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_cask"))
        .arg("--dir")
        .arg(dir.path().join("data"))
        .args(["torture", "--cycles", "3", "--clients", "2", "--seed", "7"])
        .timeout(std::time::Duration::from_secs(300))
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "PASS: 3 cycles, 2 clients, --sync always, seed 7",
        ));
}

#[test]
fn refuses_a_directory_with_data() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("0000000001.seg"), b"precious").unwrap();
    Command::new(env!("CARGO_BIN_EXE_cask"))
        .arg("--dir")
        .arg(dir.path())
        .args(["torture", "--cycles", "1"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("is not empty"));
    assert_eq!(
        std::fs::read(dir.path().join("0000000001.seg")).unwrap(),
        b"precious"
    );
}
