//! `cargo xtask ci`: exactly what CI runs. If this passes locally, CI is green.
//!
//! Steps: formatting, lints, unit tests, lock check, flake.nix evaluation; then
//! (without `--quick`) doctor, build-image, verify-repro against the image
//! just built (BOOT-3), and vm-test under BIOS and UEFI (BIOS on
//! instruction-counted time when there is no KVM, so the gateway starts),
//! split: the BIOS pass runs every ID, the UEFI pass the firmware-dependent
//! ones. The build and the rebuild run with a fake `HCLOUD_TOKEN` (INF-1's
//! canary) and the run's name (`OPENCLAW_CI_RUN`), which verify-repro
//! records and vm-test checks (BOOT-3, INF-1). Each step's time goes to
//! `target/ci/timings.json`
//! (`cargo xtask bench --only ci` reports it against its goals).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use bench::ci::{CiTimings, StepTiming};
use vm_tests::suite::rebuild::{CI_RUN_ENV, HCLOUD_CANARY_PREFIX};
use vm_tests::suite::{PASSES_FILE, random_hex, read_passes};

use crate::flags::CiArgs;

/// One step: a name, an argv and extra environment, run from the project root.
struct Step {
    name: &'static str,
    argv: Vec<String>,
    env: Vec<(&'static str, String)>,
}

fn step(name: &'static str, argv: &[&str]) -> Step {
    Step {
        name,
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: Vec::new(),
    }
}

impl Step {
    /// The step with `key=value` in its environment.
    fn with_env(mut self, key: &'static str, value: &str) -> Step {
        self.env.push((key, value.to_string()));
        self
    }
}

pub fn run(args: &CiArgs) -> Result<()> {
    let root = crate::project_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut steps = vec![
        step("format", &[&cargo, "fmt", "--all", "--check"]),
        step(
            "lints",
            &[
                &cargo,
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ),
        step("tests", &[&cargo, "test", "--workspace", "--quiet"]),
    ];
    steps.extend(gated_tests(&cargo));
    if hostutil::which("go", &[]).is_some() {
        // The test tailnet's control server (vm-tests/tailnet): its
        // registration rule, with tsnet nodes on loopback (about 30 s).
        steps.push(step(
            "test tailnet",
            &["go", "-C", "vm-tests/tailnet", "test", "./..."],
        ));
    } else {
        eprintln!("ci: go not installed; the test tailnet's Go tests NOT run (cargo xtask doctor)");
    }
    steps.push(step(
        "lock is current",
        &[&cargo, "xtask", "lock", "--check"],
    ));
    if hostutil::which("nix-instantiate", &[]).is_some() {
        // Parses flake.nix and evaluates its outputs against a stand-in
        // nixpkgs (Nix cannot fetch the real one here).
        steps.push(step(
            "flake.nix evaluates",
            &[
                "nix-instantiate",
                "--eval",
                "--strict",
                "nix/flake-eval.nix",
            ],
        ));
    } else {
        eprintln!(
            "ci: nix-instantiate not installed; flake.nix NOT checked (apt-get install nix-bin)"
        );
    }
    if !args.quick {
        // This run's name, recorded by verify-repro and checked by vm-test
        // (BOOT-3 trusts only a rebuild of its own run); and a fake Hetzner
        // token in the builds' environment, which INF-1 then searches the
        // image for (a build has no use for it: it must leave no trace).
        let run = random_hex(8)?;
        let canary = format!("{HCLOUD_CANARY_PREFIX}{}", random_hex(24)?);
        steps.push(step("host prerequisites", &[&cargo, "xtask", "doctor"]));
        steps.push(
            step(
                "build the image",
                &[&cargo, "xtask", "build-image", "--no-doctor"],
            )
            .with_env("HCLOUD_TOKEN", &canary),
        );
        // BOOT-3: a second, independent build (own stage cache, other TZ,
        // locale, umask, later time) must give the image just built.
        let name = builder::locking::Project::new(&root.join("image.toml"))
            .read_spec()?
            .image
            .name;
        let manifest = format!("target/image/{name}.manifest.json");
        steps.push(
            step(
                "the image is reproducible",
                &[
                    &cargo,
                    "xtask",
                    "verify-repro",
                    "--offline",
                    "--no-doctor",
                    "--against",
                    &manifest,
                ],
            )
            .with_env("HCLOUD_TOKEN", &canary)
            .with_env(CI_RUN_ENV, &run),
        );
        // No image B for UPD-2 here: it costs about 20 minutes of CI's 90
        // (docs/performance.md); `vm-test --image-b` runs it (README, Tests).
        steps.push(
            step(
                "the invariants hold in QEMU",
                &[
                    &cargo,
                    "xtask",
                    "vm-test",
                    "--firmware",
                    "both",
                    // Under TCG the BIOS pass runs on instruction-counted time,
                    // so the gateway starts and its cases run; both firmwares
                    // that way would not fit CI's 90 minutes (docs/performance.md).
                    "--icount",
                    "bios",
                    // Every ID on the BIOS pass; on UEFI only those whose
                    // outcome can depend on the firmware (README, Tests).
                    "--ci",
                    "--no-doctor",
                ],
            )
            .with_env(CI_RUN_ENV, &run),
        );
    }
    let started = Instant::now();
    let mut timings = CiTimings {
        finished_unix: 0,
        passed: false,
        total_s: 0.0,
        steps: Vec::new(),
        vm_test_passes: Vec::new(),
    };
    for s in &steps {
        let is_vm_test = s.argv.iter().any(|a| a == "vm-test");
        if is_vm_test {
            // Never report an earlier run's passes as this one's.
            let _ = std::fs::remove_file(root.join("target/vm-test").join(PASSES_FILE));
        }
        let t = Instant::now();
        eprintln!("ci: == {} ({})", s.name, s.argv.join(" "));
        let result = s
            .env
            .iter()
            .fold(duct::cmd(&s.argv[0], &s.argv[1..]), |c, (k, v)| c.env(k, v))
            .dir(&root)
            .run()
            .with_context(|| format!("ci step `{}` failed: {}", s.name, s.argv.join(" ")));
        timings.steps.push(StepTiming {
            name: s.name.into(),
            seconds: t.elapsed().as_secs_f64(),
            ok: result.is_ok(),
        });
        if is_vm_test {
            timings.vm_test_passes = read_passes(&root.join("target/vm-test"));
        }
        if let Err(e) = result {
            finish(&root, &mut timings, started);
            return Err(e);
        }
        eprintln!("ci: ok {} in {:.0?}", s.name, t.elapsed());
    }
    timings.passed = true;
    finish(&root, &mut timings, started);
    eprintln!(
        "ci: all {} steps passed in {:.0?}",
        steps.len(),
        started.elapsed()
    );
    Ok(())
}

/// Stamps and writes the timings; a failure to write is reported, not fatal.
fn finish(root: &std::path::Path, timings: &mut CiTimings, started: Instant) {
    timings.total_s = started.elapsed().as_secs_f64();
    timings.finished_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match timings.write(root) {
        Ok(()) => eprintln!("ci: timings in {}", CiTimings::path(root).display()),
        Err(e) => eprintln!("ci: timings not written: {e:#}"),
    }
}

/// The tests `#[ignore]`d for a prerequisite (so `cargo test` counts
/// them ignored, never passed), run by exact name where it holds; each one
/// not run is said. One `cargo test --workspace` step, as the main test
/// step's: it reuses that build (a `-p` build would unify features anew
/// and compile again). Those gated on an image or the network are not
/// here: the vm-test step proves what they do.
fn gated_tests(cargo: &str) -> Option<Step> {
    let mut names: Vec<&str> = Vec::new();
    let mut needs: Vec<&str> = Vec::new();
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if root {
        // vm-tests/tests/net.rs and vm-tests/src/net/metadata.rs
        names.push("testnet_on_the_host");
        names.push("net::metadata::tests::serves_over_tcp_in_own_namespace");
        needs.push("root");
    } else {
        eprintln!(
            "ci: not root: testnet_on_the_host and serves_over_tcp_in_own_namespace NOT run (run ci as root)"
        );
    }
    if builder::host::debian_keyring().is_file() {
        names.push("debian::release::tests::tampered_inrelease_fails_verification");
        needs.push("the Debian keyring");
    } else {
        eprintln!(
            "ci: no Debian archive keyring: tampered_inrelease_fails_verification NOT run (apt-get install debian-archive-keyring)"
        );
    }
    if names.is_empty() {
        return None;
    }
    let name: &'static str = match needs.as_slice() {
        ["root"] => "tests that need root",
        ["the Debian keyring"] => "tests that need the Debian keyring",
        _ => "tests that need root or the Debian keyring",
    };
    let mut argv = vec![
        cargo,
        "test",
        "--workspace",
        "--quiet",
        "--",
        "--ignored",
        "--exact",
    ];
    argv.extend(names);
    Some(step(name, &argv))
}
