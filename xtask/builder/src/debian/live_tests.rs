//! A check against the real mirror, run by hand: `OPENCLAW_NET_TESTS=1
//! cargo test -p builder debian::live_tests -- --ignored --nocapture`.
//! Ignored otherwise, since tests must not reach the network; run without
//! `OPENCLAW_NET_TESTS=1` it fails, saying so. Indexes are cached in
//! `$OPENCLAW_CACHE_DIR` (default: a directory in the system temp dir);
//! the spec is `$OPENCLAW_IMAGE_TOML` (default: the workspace's `image.toml`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use image_spec::lock::Deb;

use super::{Index, host_archives, load_index, merge_sets, resolve};

fn strings(table: &toml::Table, path: &[&str]) -> Vec<String> {
    let mut value = table.get(path[0]).unwrap();
    for key in &path[1..] {
        value = value.get(key).unwrap();
    }
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// Checks that every Pre-Depends/Depends of every package of `closure` is
/// met inside `closure`, independently of the resolver's bookkeeping.
fn assert_complete(index: &Index, set: &str, closure: &[Deb]) {
    let by_name: BTreeMap<&str, &Deb> = closure.iter().map(|d| (d.name.as_str(), d)).collect();
    let mut provided: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
    for deb in closure {
        let p = index.package(&deb.name, &deb.version).unwrap();
        assert!(index.stanza(&deb.name, &deb.version).is_some());
        for (virt, v) in &p.provides {
            provided.entry(virt.clone()).or_default().push(v.clone());
        }
    }
    for deb in closure {
        let p = index.package(&deb.name, &deb.version).unwrap();
        for group in p.dependencies().unwrap() {
            let ok = group.iter().any(|alt| {
                by_name
                    .get(alt.name.as_str())
                    .is_some_and(|d| alt.accepts(&d.version))
                    || provided
                        .get(&alt.name)
                        .is_some_and(|vs| vs.iter().any(|v| alt.accepts_provide(v.as_deref())))
            });
            assert!(
                ok,
                "{set}: {} {} needs `{}`, not met in the closure",
                deb.name,
                deb.version,
                super::relation::group_to_string(&group)
            );
        }
    }
}

#[test]
#[ignore = "needs OPENCLAW_NET_TESTS=1 and the real Debian mirror; run with --ignored"]
fn real_indexes_and_closures() {
    assert!(
        std::env::var("OPENCLAW_NET_TESTS").as_deref() == Ok("1"),
        "OPENCLAW_NET_TESTS is not 1: set OPENCLAW_NET_TESTS=1 to run \
         real_indexes_and_closures against the real Debian mirror"
    );
    let spec_path = std::env::var_os("OPENCLAW_IMAGE_TOML")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../image.toml"));
    let spec: toml::Table = std::fs::read_to_string(&spec_path)
        .unwrap()
        .parse()
        .unwrap();
    let suites = strings(&spec, &["debian", "suites"]);
    let components = strings(&spec, &["debian", "components"]);
    let cache: PathBuf = std::env::var_os("OPENCLAW_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("openclaw-debian-index-cache"));

    let archives = host_archives(Path::new("/etc/apt")).unwrap();
    let start = Instant::now();
    let (index, releases) = load_index(&archives, &suites, &components, "amd64", &cache).unwrap();
    println!(
        "loaded {} package versions from {} suites in {:.1?}",
        index.len(),
        releases.len(),
        start.elapsed()
    );
    for r in &releases {
        println!(
            "  {} ({}) {} {}",
            r.suite, r.archive, r.date, r.inrelease_sha256
        );
    }
    assert_eq!(releases.len(), suites.len());
    for (r, s) in releases.iter().zip(&suites) {
        assert_eq!(&r.suite, s);
        let want = if s.ends_with("-security") {
            "debian-security"
        } else {
            "debian"
        };
        assert_eq!(r.archive, want);
    }

    let mut closures = Vec::new();
    for set in ["host", "sandbox", "tools"] {
        let roots = strings(&spec, &["packages", set]);
        let start = Instant::now();
        let closure = resolve(&index, set, &roots, &BTreeMap::new()).unwrap();
        let elapsed = start.elapsed();
        for root in &roots {
            assert!(
                closure.iter().any(|d| &d.name == root),
                "{set}: root {root} missing"
            );
        }
        assert_complete(&index, set, &closure);
        // Same answer again, and with its own versions as pins.
        assert_eq!(
            resolve(&index, set, &roots, &BTreeMap::new()).unwrap(),
            closure
        );
        let pins: BTreeMap<String, String> = closure
            .iter()
            .map(|d| (d.name.clone(), d.version.clone()))
            .collect();
        assert_eq!(resolve(&index, set, &roots, &pins).unwrap(), closure);
        let size: u64 = closure.iter().map(|d| d.size).sum();
        let security = closure
            .iter()
            .filter(|d| d.archive == "debian-security")
            .count();
        println!(
            "{set}: {} packages, {:.1} MiB of .debs ({security} from debian-security), resolved in {elapsed:.1?}",
            closure.len(),
            size as f64 / (1024.0 * 1024.0),
        );
        println!(
            "  {}",
            closure
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        );
        closures.push(closure);
    }

    let host = &closures[0];
    for want in [
        "systemd",
        "docker.io",
        "ufw",
        "libc6",
        "apt",
        "base-files",
        "bash",
        "dpkg",
    ] {
        assert!(host.iter().any(|d| d.name == want), "host lacks {want}");
    }
    assert!(
        host.iter()
            .any(|d| d.name.starts_with("linux-image-") && d.name.ends_with("-cloud-amd64")),
        "host lacks a linux-image-*-cloud-amd64"
    );

    let merged = merge_sets(closures).unwrap();
    println!("merged: {} packages", merged.len());

    // A suite the mirror does not have: the error names the URL and the 404.
    let err = load_index(
        &archives,
        &["no-such-suite".to_string()],
        &components,
        "amd64",
        &cache,
    )
    .unwrap_err()
    .to_string();
    println!("missing suite: {err}");
    assert!(err.contains("/dists/no-such-suite/InRelease"), "{err}");
    assert!(err.contains("404"), "{err}");
}
