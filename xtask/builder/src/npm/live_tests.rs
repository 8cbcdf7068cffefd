//! The whole npm side against the real registry (network, ~1 GB of disk,
//! minutes). Ignored by default; run with
//! `NPM_LIVE_WORK=/var/tmp/npm-work cargo test -p builder --lib npm::live_tests -- --ignored --nocapture`.

use std::path::PathBuf;
use std::time::Instant;

use super::*;

/// `NPM_LIVE_WORK`; panics, saying what to set, without it.
fn work(test: &str) -> PathBuf {
    std::env::var_os("NPM_LIVE_WORK")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "NPM_LIVE_WORK is not set: set NPM_LIVE_WORK=/var/tmp/npm-work \
                 (a work directory with ~1 GB free) to run {test}"
            )
        })
}

#[test]
#[ignore = "needs NPM_LIVE_WORK=<a work directory>, the npm registry and ~1 GB of disk; run with --ignored"]
fn lock_fetch_install_validate() {
    let work = work("lock_fetch_install_validate");
    let node_version = std::env::var("NPM_LIVE_NODE").unwrap_or_else(|_| "24.21.0".into());
    let t = Instant::now();
    let reg = registry(None).unwrap();
    let store = Store::open(&work.join("store")).unwrap();

    let node = lock_node(&reg, &node_version, "x64", &store).unwrap();
    eprintln!("lock_node: {:?} in {:.1?}", node, t.elapsed());
    let t = Instant::now();
    let npm = lock_npm(&reg, NPM_VERSION, &store).unwrap();
    eprintln!("lock_npm: {:?} in {:.1?}", npm, t.elapsed());

    let t = Instant::now();
    let rt = Runtime::new(&store, &node, &npm).unwrap();
    eprintln!("runtime unpacked in {:.1?}", t.elapsed());

    let t = Instant::now();
    let lockfile = work.join(NPM_LOCKFILE);
    let oc = lock_openclaw(&reg, "2026.9.6", &[], &rt, &store, &lockfile).unwrap();
    eprintln!("lock_openclaw: {oc:#?} in {:.1?}", t.elapsed());
    check_lockfile_hash(&lockfile, &oc).unwrap();

    for round in 1..=2 {
        let t = Instant::now();
        let f = fetch_tree(&reg, &rt, &lockfile, &store).unwrap();
        eprintln!("fetch_tree #{round}: {f:?} in {:.1?}", t.elapsed());
        if round == 2 {
            assert!(f.already_complete, "a second fetch must download nothing");
        }
    }

    let mut trees = Vec::new();
    let outs = std::env::var("NPM_LIVE_OUTS").unwrap_or_else(|_| "out-a,out-b".into());
    for name in outs.split(',') {
        let out = work.join(name);
        if out.exists() {
            std::fs::remove_dir_all(&out).unwrap();
        }
        let t = Instant::now();
        let tree = install_app(&rt, &reg, &lockfile, &store, &out, 1_763_942_400).unwrap();
        eprintln!(
            "install_app {name}: {} packages, {} files, {:.1} MB in {:.1?}",
            tree.packages,
            tree.files,
            tree.bytes as f64 / 1e6,
            t.elapsed()
        );
        let v = tree.version().unwrap();
        eprintln!("--version: {v}");
        assert!(v.contains("2026.9.6"), "{v}");
        trees.push(tree);
    }
    eprintln!("wrapper:\n{}", trees[0].wrapper());

    let good = work.join("good.json5");
    std::fs::write(
        &good,
        "{ gateway: { port: 18789, bind: \"loopback\", mode: \"local\" } }\n",
    )
    .unwrap();
    let bad = work.join("bad.json5");
    std::fs::write(&bad, "{ gateway: { port: 18789, bnid: \"loopback\" } }\n").unwrap();
    let t = Instant::now();
    validate_config(&trees[0], &good).unwrap();
    eprintln!("valid config accepted in {:.1?}", t.elapsed());
    let e = validate_config(&trees[0], &bad).unwrap_err();
    eprintln!("misspelled config: {e:#}");
    assert!(format!("{e:#}").contains("bnid"), "{e:#}");
}

#[test]
#[ignore = "needs NPM_LIVE_WORK=<a work directory> and the npm registry; run with --ignored"]
fn missing_node_version_is_named() {
    let work = work("missing_node_version_is_named");
    let reg = registry(None).unwrap();
    let store = Store::open(&work.join("store")).unwrap();
    let e = format!(
        "{:#}",
        lock_node(&reg, "24.99.0", "x64", &store).unwrap_err()
    );
    eprintln!("{e}");
    assert!(e.contains("node.version 24.99.0 in image.toml"), "{e}");
    assert!(e.contains("does that version exist"), "{e}");
}
