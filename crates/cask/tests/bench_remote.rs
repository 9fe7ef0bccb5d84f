//! `cask bench --remote` against a real `cask serve`.

mod server_common;

use assert_cmd::Command;
use server_common::Server;

#[test]
fn remote_bench_measures_a_server_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let client = redis::Client::open(server.url()).unwrap();
    let mut con = client.get_connection().unwrap();
    let _: () = redis::cmd("SET")
        .arg("mine")
        .arg("kept")
        .query(&mut con)
        .unwrap();
    let addr = server.addr.to_string();
    let out = Command::cargo_bin("cask")
        .unwrap()
        .args([
            "bench", "--remote", &addr, "-n", "300", "-c", "2", "-r", "50", "--json",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let report: serde_json::Value = serde_json::from_slice(&out).expect("bench prints JSON");
    assert_eq!(report["mode"], "remote");
    assert_eq!(report["target"], addr);
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    for r in results {
        assert_eq!(r["requests"], 300, "{r}");
        assert!(r["ops_per_sec"].as_f64().unwrap() > 0.0, "{r}");
    }
    // Only the user's key is left.
    let size: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(size, 1);
    let kept: String = redis::cmd("GET").arg("mine").query(&mut con).unwrap();
    assert_eq!(kept, "kept");
}

#[test]
fn remote_bench_reports_an_unreachable_server() {
    let out = Command::cargo_bin("cask")
        .unwrap()
        .args(["bench", "--remote", "127.0.0.1:1", "-n", "10"])
        .assert()
        .failure()
        .get_output()
        .stderr
        .clone();
    let err = String::from_utf8_lossy(&out);
    assert!(
        err.starts_with("cask: cannot connect to 127.0.0.1:1"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}
