//! SUP-1: what ships is what the lock pinned, verified inside the guest
//! against the image's manifest: the Debian packages installed (names and
//! versions) are the manifest's host set and `dpkg --verify` finds their
//! files as their `.deb`s (whose sha256 the lock pins) shipped them; Node
//! is the locked version; the OpenClaw tree's lockfile is the locked one
//! (by sha256) and every installed package is the version it locks, with
//! none beside it. The build-side half (every input pinned by version and
//! hash in the manifest, a mismatch aborting the build) is read from the
//! manifest as before.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde_json::Value;

use super::{Ctx, expect};
use crate::suite::rebuild::sha256_hex;
use crate::suite::report::Outcome;
use hostutil::shell_quote;

/// Where the OpenClaw tree is installed (`npm ci` of the locked tree).
pub const OPENCLAW_TREE: &str = "/opt/openclaw";
/// The Node runtime the image ships.
pub const NODE: &str = "/opt/node/bin/node";

/// Prints, as JSON, every package directory under the tree's
/// `node_modules` (nested ones included) with its `package.json` version
/// (`null` when unreadable), keyed as npm's lockfile keys them.
const TREE_SCRIPT: &str = r#"
const fs = require('fs'), path = require('path');
const root = process.argv[1], out = {};
function walk(dir) {
  let names;
  try { names = fs.readdirSync(path.join(root, dir)); } catch (e) { return; }
  for (const n of names) {
    if (n.startsWith('.')) continue;
    if (n.startsWith('@')) {
      for (const m of fs.readdirSync(path.join(root, dir, n))) pkg(dir + '/' + n + '/' + m);
    } else pkg(dir + '/' + n);
  }
}
function pkg(rel) {
  let v = null;
  try { v = JSON.parse(fs.readFileSync(path.join(root, rel, 'package.json'))).version || null; } catch (e) {}
  out[rel] = v;
  walk(rel + '/node_modules');
}
walk('node_modules');
console.log(JSON.stringify(out));
"#;

/// SUP-1, in the guest: see the module's documentation.
pub fn sup_1(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    let m = &ctx.facts.manifest;
    let (pinned_ok, pinned) = manifest_pins(m);
    let dpkg = ctx
        .machine
        .succeed("dpkg-query -W -f='${Package} ${Version}\\n'")?;
    let (debs_ok, debs) = compare_debian(m, &dpkg);
    // `dpkg --verify` may exit non-zero when it lists anything: read its lines.
    let (_, verify) = ctx.machine.execute("dpkg --verify 2>&1")?;
    let dpkg_cfg = ctx
        .machine
        .succeed("cat /etc/dpkg/dpkg.cfg.d/* 2>/dev/null || true")?;
    let (verify_ok, verified) = judge_dpkg_verify(&verify, &dpkg_cfg);
    let node = ctx.machine.succeed(&format!("{NODE} --version"))?;
    let want_node = ctx.facts.manifest_str("/node/version");
    let node_ok = !want_node.is_empty() && node.trim() == format!("v{want_node}");
    let lockfile = ctx
        .machine
        .copy_from_vm(&format!("{OPENCLAW_TREE}/package-lock.json"))?;
    let lock_sha = sha256_hex(&lockfile);
    let want_lock = ctx.facts.manifest_str("/openclaw/npm_lockfile_sha256");
    let tree = ctx.machine.succeed(&format!(
        "{NODE} -e {} {OPENCLAW_TREE}",
        shell_quote(TREE_SCRIPT)
    ))?;
    let (tree_ok, tree_seen) = compare_tree(
        std::str::from_utf8(&lockfile).context("the shipped package-lock.json is not UTF-8")?,
        &tree,
    )?;
    let lock_ok = !want_lock.is_empty() && lock_sha == want_lock;
    let ok = pinned_ok && debs_ok && verify_ok && node_ok && lock_ok && tree_ok;
    Ok(expect(
        ok,
        format!(
            "{debs}\n{verified}\nNode: {NODE} --version {}, manifest {want_node} \
             (the binary's own hash is not in the manifest: only its package's tarball hash)\n\
             OpenClaw: {OPENCLAW_TREE}/package-lock.json sha256 {lock_sha}, manifest {want_lock}; {tree_seen}\n\
             build side: {pinned}",
            node.trim()
        ),
    ))
}

/// The build-side half: the manifest pins every input by version and
/// content hash (each Debian package, Node, OpenClaw and its npm tree,
/// Tailscale).
fn manifest_pins(m: &Value) -> (bool, String) {
    let hex64 = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .is_some_and(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    let debs = m
        .get("debian_packages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let unpinned: Vec<String> = debs
        .iter()
        .filter(|d| {
            !hex64(d.get("sha256"))
                || d.get("version")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
        })
        .map(|d| {
            d.get("name")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string()
        })
        .collect();
    let sha512 = |p: &str| {
        m.pointer(p)
            .and_then(Value::as_str)
            .is_some_and(|s| s.starts_with("sha512-"))
    };
    let node = hex64(m.pointer("/node/sha256")) && sha512("/node/integrity");
    let oc = hex64(m.pointer("/openclaw/npm_lockfile_sha256")) && sha512("/openclaw/integrity");
    // Tailscale built from its Go module pins the module and its go.mod
    // by `h1:` hash (the lock holds every module of the closure so), the
    // toolchain and the closure's size; a release tarball pins a sha256;
    // an image without Tailscale pins nothing.
    let h1 = |p: &str| {
        m.pointer(p)
            .and_then(Value::as_str)
            .is_some_and(|s| s.starts_with("h1:") && s.len() > 10)
    };
    let ts = match (
        m.pointer("/tailscale/present").and_then(Value::as_bool),
        m.pointer("/tailscale/source").and_then(Value::as_str),
    ) {
        (Some(false), _) => true,
        (_, Some("module")) => {
            h1("/tailscale/module/h1")
                && h1("/tailscale/module/go_mod_h1")
                && m.pointer("/tailscale/go_toolchain")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.starts_with("go1."))
                && m.pointer("/tailscale/modules")
                    .and_then(Value::as_u64)
                    .is_some_and(|n| n > 0)
        }
        _ => hex64(m.pointer("/tailscale/sha256")),
    };
    (
        !debs.is_empty() && unpinned.is_empty() && node && oc && ts,
        format!(
            "the manifest pins {} Debian packages (unpinned: {unpinned:?}); node {node}; \
             openclaw + npm tree {oc}; tailscale {ts}",
            debs.len()
        ),
    )
}

/// The manifest's host packages against `dpkg-query -W` lines (`NAME
/// VERSION`): every one installed at its version, nothing else installed.
fn compare_debian(m: &Value, dpkg: &str) -> (bool, String) {
    let want: BTreeMap<&str, &str> = m
        .get("debian_packages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|d| {
            d.get("sets")
                .and_then(Value::as_array)
                .is_some_and(|s| s.iter().any(|x| x == "host"))
        })
        .filter_map(|d| Some((d.get("name")?.as_str()?, d.get("version")?.as_str()?)))
        .collect();
    let have: BTreeMap<&str, &str> = dpkg
        .lines()
        .filter_map(|l| l.trim().split_once(' '))
        .collect();
    let mut problems = Vec::new();
    for (name, version) in &want {
        match have.get(name) {
            None => problems.push(format!("{name} {version} not installed")),
            Some(v) if v != version => {
                problems.push(format!("{name} is {v}, the manifest locks {version}"))
            }
            Some(_) => {}
        }
    }
    for (name, v) in &have {
        if !want.contains_key(name) {
            problems.push(format!("{name} {v} installed, not in the manifest"));
        }
    }
    (
        !want.is_empty() && problems.is_empty(),
        format!(
            "Debian: {} installed, {} in the manifest's host set; differences: {}",
            have.len(),
            want.len(),
            if problems.is_empty() {
                "none".to_string()
            } else {
                problems.join("; ")
            }
        ),
    )
}

/// `dpkg --verify`'s lines (`??5??????   /path`, `??5?????? c /etc/x`,
/// `missing     /path`) judged with the image's dpkg configuration
/// (`/etc/dpkg/dpkg.cfg.d/*`, its `path-exclude=`/`path-include=` lines):
/// a changed or missing package file fails; a changed conffile is listed
/// (the appliance layer configures the system through them) but does not
/// fail, nor does a file missing because the configuration excludes it
/// (the build leaves out docs, man pages and locales that way).
fn judge_dpkg_verify(out: &str, dpkg_cfg: &str) -> (bool, String) {
    let rules: Vec<(bool, &str)> = dpkg_cfg
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            l.strip_prefix("path-exclude=")
                .map(|p| (true, p))
                .or_else(|| l.strip_prefix("path-include=").map(|p| (false, p)))
        })
        .collect();
    // dpkg applies the last matching rule.
    let excluded = |path: &str| {
        rules
            .iter()
            .rev()
            .find(|(_, glob)| glob_match(glob.as_bytes(), path.as_bytes()))
            .is_some_and(|(exclude, _)| *exclude)
    };
    let mut conffiles = Vec::new();
    let mut left_out = 0;
    let mut changed = Vec::new();
    for l in out.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let fields: Vec<&str> = l.split_whitespace().collect();
        match fields.as_slice() {
            [_, "c", path] => conffiles.push(*path),
            ["missing", path] if excluded(path) => left_out += 1,
            _ => changed.push(l),
        }
    }
    (
        changed.is_empty(),
        format!(
            "dpkg --verify: package files differing from their .deb: {}; conffiles changed \
             (listed, allowed): {}; files left out by the image's dpkg path-exclude: {left_out}",
            if changed.is_empty() {
                "none".to_string()
            } else {
                changed.join(", ")
            },
            if conffiles.is_empty() {
                "none".to_string()
            } else {
                conffiles.join(" ")
            }
        ),
    )
}

/// `fnmatch(3)` without flags, as dpkg matches `path-exclude`: `*` any run
/// of bytes (`/` included), `?` any one byte, everything else itself.
fn glob_match(glob: &[u8], s: &[u8]) -> bool {
    match glob.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| glob_match(rest, &s[i..])),
        Some((b'?', rest)) => !s.is_empty() && glob_match(rest, &s[1..]),
        Some((c, rest)) => s.first() == Some(c) && glob_match(rest, &s[1..]),
    }
}

/// The shipped lockfile's text against the installed tree (the guest's
/// [`TREE_SCRIPT`] JSON): each locked package at its version (an optional
/// one may be absent: npm skips those for another platform), none
/// installed that the lock does not name.
fn compare_tree(lock: &str, tree: &str) -> Result<(bool, String)> {
    let lock: Value = serde_json::from_str(lock).context("the shipped package-lock.json")?;
    let tree: BTreeMap<String, Option<String>> =
        serde_json::from_str(tree.trim()).context("the guest's list of installed packages")?;
    let locked = lock
        .get("packages")
        .and_then(Value::as_object)
        .context("package-lock.json has no `packages`")?;
    let mut problems = Vec::new();
    let mut optional_absent = 0;
    let mut checked = 0;
    for (path, entry) in locked {
        if path.is_empty() || entry.get("link").is_some_and(|l| l == true) {
            continue;
        }
        let version = entry.get("version").and_then(Value::as_str);
        match tree.get(path) {
            Some(have) if have.as_deref() == version => checked += 1,
            Some(have) => problems.push(format!(
                "{path} is {}, the lock says {}",
                have.as_deref().unwrap_or("unreadable"),
                version.unwrap_or("?")
            )),
            None if entry.get("optional").is_some_and(|o| o == true) => optional_absent += 1,
            None => problems.push(format!("{path} is not installed")),
        }
    }
    for path in tree.keys() {
        if !locked.contains_key(path) {
            problems.push(format!("{path} is installed, not in the lock"));
        }
    }
    Ok((
        checked > 0 && problems.is_empty(),
        format!(
            "{checked} installed packages at their locked versions, {optional_absent} optional ones \
             absent (another platform's); problems: {}",
            if problems.is_empty() {
                "none".to_string()
            } else {
                problems.join("; ")
            }
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Value {
        serde_json::json!({"debian_packages": [
            {"name": "adduser", "version": "3.152", "sets": ["host", "sandbox"], "sha256": "ab".repeat(32)},
            {"name": "bash", "version": "5.2-1", "sets": ["host"], "sha256": "cd".repeat(32)},
            {"name": "gcc", "version": "14", "sets": ["sandbox"], "sha256": "ef".repeat(32)},
        ]})
    }

    #[test]
    fn debian_packages_must_be_the_manifests_host_set() {
        let good = "adduser 3.152\nbash 5.2-1\n";
        assert!(compare_debian(&manifest(), good).0);
        for bad in [
            "adduser 3.152\n",
            "adduser 3.152\nbash 5.2-2\n",
            "adduser 3.152\nbash 5.2-1\nnetcat 1.0\n",
        ] {
            let (ok, seen) = compare_debian(&manifest(), bad);
            assert!(!ok, "{bad:?} passed: {seen}");
        }
        assert!(!compare_debian(&serde_json::json!({}), "").0);
    }

    /// The image's own dpkg configuration (mmdebstrap's, as built).
    const DPKG_CFG: &str = "path-exclude=/usr/share/doc/*/changelog*\n\
        path-exclude=/usr/share/man/*\npath-exclude=/usr/share/locale/*\n\
        path-include=/usr/share/locale/locale.alias\n";

    #[test]
    fn dpkg_verify_fails_on_a_changed_package_file_not_a_conffile() {
        assert!(judge_dpkg_verify("", DPKG_CFG).0);
        // What the built image showed (docs and locales left out, ufw's
        // defaults set by the appliance layer).
        let built = "missing     /usr/share/doc/libgnutls30t64/changelog.Debian.gz\n\
                     missing     /usr/share/locale/cs\n\
                     missing     /usr/share/locale/cs/LC_MESSAGES/gnutls30.mo\n\
                     ??5?????? c /etc/default/ufw\n";
        let (ok, seen) = judge_dpkg_verify(built, DPKG_CFG);
        assert!(
            ok && seen.contains("/etc/default/ufw") && seen.contains("path-exclude: 3"),
            "{seen}"
        );
        for bad in [
            "??5??????   /usr/bin/sudo\n",
            "missing     /usr/lib/x.so\n",
            "missing     /usr/share/locale/locale.alias\n",
            "missing     /usr/share/doc/bash/copyright\n",
        ] {
            let (ok, seen) = judge_dpkg_verify(bad, DPKG_CFG);
            assert!(!ok, "{bad} passed: {seen}");
        }
    }

    #[test]
    fn the_tree_must_be_what_the_lock_names() {
        let lock = serde_json::json!({"packages": {
            "": {"name": "app"},
            "node_modules/a": {"version": "1.0.0"},
            "node_modules/@s/b": {"version": "2.0.0"},
            "node_modules/a/node_modules/c": {"version": "3.0.0"},
            "node_modules/fsevents": {"version": "2.3.3", "optional": true},
        }})
        .to_string();
        let good = r#"{"node_modules/a":"1.0.0","node_modules/@s/b":"2.0.0","node_modules/a/node_modules/c":"3.0.0"}"#;
        let (ok, seen) = compare_tree(&lock, good).expect("compare");
        assert!(ok, "{seen}");
        assert!(
            seen.contains("3 installed") && seen.contains("1 optional"),
            "{seen}"
        );
        for bad in [
            good.replace("\"1.0.0\"", "\"1.0.1\""),
            good.replace(r#","node_modules/@s/b":"2.0.0""#, ""),
            good.replace('}', r#","node_modules/evil":"6.6.6"}"#),
            good.replace("\"3.0.0\"", "null"),
        ] {
            let (ok, seen) = compare_tree(&lock, &bad).expect("compare");
            assert!(!ok, "{bad} passed: {seen}");
        }
    }

    #[test]
    fn the_manifest_pins_every_input() {
        let mut m = manifest();
        m["node"] = serde_json::json!({"sha256": "ab".repeat(32), "integrity": "sha512-x"});
        m["openclaw"] =
            serde_json::json!({"npm_lockfile_sha256": "ab".repeat(32), "integrity": "sha512-x"});
        m["tailscale"] = serde_json::json!({"sha256": "ab".repeat(32)});
        assert!(manifest_pins(&m).0);
        let module = serde_json::json!({"present": true, "source": "module",
            "go_toolchain": "go1.26.8", "modules": 93,
            "module": {"path": "tailscale.com", "version": "v1.102.5",
                "h1": "h1:2jK9VxQU4Vq/tyR7f2U2NqINxU0pV7R14TDBFsfguHE=",
                "go_mod_h1": "h1:47bv91Xbg4K1p5wti7F1dmKvUVWV5BXF78d9EWJ+d6c="}});
        m["tailscale"] = module.clone();
        assert!(manifest_pins(&m).0, "a module build pins by h1");
        m["tailscale"]["module"]["h1"] = Value::from("");
        assert!(!manifest_pins(&m).0, "a module build without its hash");
        m["tailscale"] = module;
        m["tailscale"]["modules"] = Value::from(0);
        assert!(!manifest_pins(&m).0, "no module closure");
        m["tailscale"] = serde_json::json!({"present": true, "source": "tarball"});
        assert!(!manifest_pins(&m).0, "a tarball without its sha256");
        m["tailscale"] = serde_json::json!({"present": false});
        assert!(manifest_pins(&m).0, "no Tailscale, nothing to pin");
        m["debian_packages"][1]["sha256"] = Value::from("short");
        let (ok, seen) = manifest_pins(&m);
        assert!(!ok && seen.contains("bash"), "{seen}");
    }
}
