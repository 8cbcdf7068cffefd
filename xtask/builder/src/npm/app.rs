//! The OpenClaw tree: filling the npm cache in the store, the offline
//! install into `/opt`, the CLI wrapper and config validation.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::http::read_text;
use super::lockfile::{LockfileSummary, check_lockfile, manifest_for};
use super::runtime::{NpmInvocation, Runtime, base_env, extract_tgz, run_captured, store_name};
use crate::store::Store;

/// Where Node goes in the image (and below an [`AppTree`]'s root).
pub const IMAGE_NODE_DIR: &str = "opt/node";
/// Where the OpenClaw project (`package.json`, lockfile, `node_modules`) goes.
pub const IMAGE_OPENCLAW_DIR: &str = "opt/openclaw";

/// Marker OpenClaw's preinstall leaves and its postinstall removes; present
/// after an install means the lifecycle did not complete.
const LIFECYCLE_PENDING: &str = ".openclaw-lifecycle-pending";

/// The npm cache inside the store (`<store>/npm-cache`), keyed by npm
/// itself (cacache: sha512-addressed content, verified on write and read).
pub fn npm_cache_dir(store: &Store) -> PathBuf {
    store.root().join("npm-cache")
}

/// What [`fetch_tree`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchReport {
    /// The npm cache that now holds every tarball.
    pub cache: PathBuf,
    /// Packages with their own tarball in the lockfile.
    pub packages: u64,
    /// True when an offline install already succeeded: nothing was downloaded.
    pub already_complete: bool,
}

/// `--os/--cpu/--libc` for the image (Debian, glibc), so the optional
/// native packages npm picks do not depend on the build host.
fn platform_args(runtime: &Runtime) -> Result<[String; 3]> {
    let pkg = &runtime.node_lock().package;
    let cpu = pkg
        .strip_prefix("node-linux-")
        .with_context(|| format!("node package `{pkg}` is not node-linux-<arch>"))?;
    Ok([
        "--os=linux".to_string(),
        format!("--cpu={cpu}"),
        "--libc=glibc".to_string(),
    ])
}

fn read_lockfile(lockfile: &Path) -> Result<(String, LockfileSummary)> {
    let text = read_text(lockfile)?;
    let name = lockfile.display().to_string();
    let summary = check_lockfile(&name, &text)?;
    Ok((text, summary))
}

fn scratch_dir(store: &Store, prefix: &str) -> Result<tempfile::TempDir> {
    let tmp = store.root().join("tmp");
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&tmp)
        .with_context(|| format!("creating a directory in {}", tmp.display()))
}

/// Writes `package.json` + `package-lock.json` for `npm ci` into `dir`.
fn write_project(dir: &Path, lock_text: &str, summary: &LockfileSummary) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, text) in [
        ("package.json", manifest_for(summary)?),
        ("package-lock.json", lock_text.to_string()),
    ] {
        let p = dir.join(name);
        fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

/// Puts every tarball the npm `lockfile` needs on linux/<arch>/glibc into
/// the store's npm cache ([`npm_cache_dir`]), by running
/// `npm ci --ignore-scripts` in a scratch project (its `node_modules` is
/// discarded). First tries `--offline`: when that succeeds the cache is
/// complete and nothing is downloaded.
pub fn fetch_tree(
    registry: &str,
    runtime: &Runtime,
    lockfile: &Path,
    store: &Store,
) -> Result<FetchReport> {
    let (text, summary) = read_lockfile(lockfile)?;
    let cache = npm_cache_dir(store);
    fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let scratch = scratch_dir(store, "npm-fetch-")?;
    let project = scratch.path().join("project");
    write_project(&project, &text, &summary)?;
    let platform = platform_args(runtime)?;
    let mut npm = NpmInvocation {
        node: &runtime.node_bin(),
        npm_cli: &runtime.npm_cli(),
        project: &project,
        scratch: scratch.path(),
        registry,
        cache: &cache,
        online: false,
        env: Vec::new(),
    };
    let mut args = vec![
        "ci",
        "--ignore-scripts",
        "--omit=dev",
        "--no-audit",
        "--no-fund",
    ];
    args.extend(platform.iter().map(String::as_str));
    let mut offline = args.clone();
    offline.push("--offline");
    let already_complete = npm.run(&offline, Duration::from_secs(1800)).is_ok();
    if !already_complete {
        let nm = project.join("node_modules");
        if nm.exists() {
            fs::remove_dir_all(&nm).with_context(|| format!("removing {}", nm.display()))?;
        }
        npm.online = true;
        let mut online = args.clone();
        online.push("--prefer-offline");
        npm.run(&online, Duration::from_secs(3600))
            .with_context(|| {
                format!(
                    "downloading the npm tree of {} from {registry}",
                    lockfile.display()
                )
            })?;
    }
    Ok(FetchReport {
        cache,
        packages: summary.packages,
        already_complete,
    })
}

/// An installed app tree: `<root>/opt/node` (the locked Node) and
/// `<root>/opt/openclaw` (OpenClaw's `node_modules`, lifecycle scripts run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppTree {
    /// The directory that stands for `/` of the image.
    pub root: PathBuf,
    /// Installed OpenClaw version.
    pub openclaw_version: String,
    /// OpenClaw's CLI entry relative to `root`
    /// (`opt/openclaw/node_modules/openclaw/openclaw.mjs`).
    pub entry: String,
    /// Packages installed (`node_modules/.package-lock.json` entries).
    pub packages: u64,
    /// Regular files below `opt/node` and `opt/openclaw`.
    pub files: u64,
    /// Their total size in bytes.
    pub bytes: u64,
}

impl AppTree {
    /// Reads an already installed tree below `root`.
    pub fn open(root: &Path) -> Result<AppTree> {
        let app = root.join(IMAGE_OPENCLAW_DIR);
        let pkg_path = app.join("node_modules/openclaw/package.json");
        let pkg: Value = serde_json::from_str(&read_text(&pkg_path)?)
            .with_context(|| format!("{} is not JSON", pkg_path.display()))?;
        let version = pkg
            .get("version")
            .and_then(Value::as_str)
            .with_context(|| format!("{}: no version", pkg_path.display()))?
            .to_string();
        let bin = match pkg.get("bin") {
            Some(Value::String(s)) => Some(s.as_str()),
            Some(Value::Object(m)) => m.get("openclaw").and_then(Value::as_str),
            _ => None,
        }
        .with_context(|| format!("{}: no `openclaw` bin", pkg_path.display()))?;
        let bin = bin.trim_start_matches("./");
        super::lockfile::check_relative(bin)
            .with_context(|| format!("{}: bin", pkg_path.display()))?;
        let entry = format!("{IMAGE_OPENCLAW_DIR}/node_modules/openclaw/{bin}");
        if !root.join(&entry).is_file() {
            bail!("{} does not exist", root.join(&entry).display());
        }
        let hidden = app.join("node_modules/.package-lock.json");
        let hidden_v: Value = serde_json::from_str(&read_text(&hidden)?)
            .with_context(|| format!("{} is not JSON", hidden.display()))?;
        let packages = hidden_v
            .get("packages")
            .and_then(Value::as_object)
            .map_or(0, |m| m.keys().filter(|k| !k.is_empty()).count() as u64);
        let (mut files, mut bytes) = (0, 0);
        for dir in [IMAGE_NODE_DIR, IMAGE_OPENCLAW_DIR] {
            walk(&root.join(dir), &mut |_, md| {
                if md.is_file() {
                    files += 1;
                    bytes += md.len();
                }
                Ok(())
            })?;
        }
        Ok(AppTree {
            root: root.to_path_buf(),
            openclaw_version: version,
            entry,
            packages,
            files,
            bytes,
        })
    }

    /// The tree's `node` binary on the build host.
    pub fn node(&self) -> PathBuf {
        self.root.join(IMAGE_NODE_DIR).join("bin/node")
    }

    /// The CLI entry on the build host.
    pub fn entry_path(&self) -> PathBuf {
        self.root.join(&self.entry)
    }

    /// The `/usr/local/bin/openclaw` wrapper for this tree (image paths).
    pub fn wrapper(&self) -> String {
        wrapper_script(
            &format!("/{IMAGE_NODE_DIR}/bin/node"),
            &format!("/{}", self.entry),
        )
    }

    /// Runs `openclaw --version` with the tree's node (scratch HOME, no network).
    pub fn version(&self) -> Result<String> {
        let scratch = tempfile::tempdir().context("creating a temporary directory")?;
        let out = self.run_cli(&["--version"], scratch.path(), Vec::new())?;
        if !out.success {
            bail!("`openclaw --version` failed: {}", out.tail(20));
        }
        Ok(out.text.trim().to_string())
    }

    fn run_cli(
        &self,
        args: &[&str],
        scratch: &Path,
        extra: Vec<(OsString, OsString)>,
    ) -> Result<super::runtime::Captured> {
        for sub in ["home", "tmp", "state"] {
            let d = scratch.join(sub);
            fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        }
        let node = self.node();
        let node_dir = node.parent().unwrap_or(Path::new("/")).to_path_buf();
        let mut env = base_env(&node_dir, scratch);
        env.push(("OPENCLAW_STATE_DIR".into(), scratch.join("state").into()));
        env.extend(extra);
        let mut argv: Vec<OsString> = vec![self.entry_path().into()];
        argv.extend(args.iter().map(OsString::from));
        run_captured(
            duct::cmd(&node, argv).dir(scratch).full_env(env),
            &format!("openclaw {}", args.join(" ")),
            Duration::from_secs(300),
        )
    }
}

/// Installs the locked Node and the OpenClaw tree below `out`, offline, from
/// the store only: Node's tarball is unpacked into `<out>/opt/node`, then
/// `npm ci --omit=dev --offline` runs in `<out>/opt/openclaw` with that node
/// and the locked npm, lifecycle scripts included (OpenClaw's postinstall
/// must run at bake time). The environment is explicit (`SOURCE_DATE_EPOCH`,
/// `TZ=UTC`, `LC_ALL=C.UTF-8`, scratch HOME/TMPDIR, no `npm_config_*`).
///
/// Afterwards: caches are removed, every file is checked not to contain a
/// build path, modes are normalised (0755 dirs and executables, 0644
/// otherwise) and mtimes set to `source_date_epoch`, so two installs give
/// the same tree whatever the umask. `registry` only names npm's cache keys
/// (the same as for [`fetch_tree`]); nothing is downloaded.
pub fn install_app(
    runtime: &Runtime,
    registry: &str,
    lockfile: &Path,
    store: &Store,
    out: &Path,
    source_date_epoch: u64,
) -> Result<AppTree> {
    let started = std::time::Instant::now();
    let phase = |what: &str| eprintln!("app: {what} ({:.1?})", started.elapsed());
    let (text, summary) = read_lockfile(lockfile)?;
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let out = out
        .canonicalize()
        .with_context(|| format!("resolving {}", out.display()))?;
    let node_dir = out.join(IMAGE_NODE_DIR);
    let app_dir = out.join(IMAGE_OPENCLAW_DIR);
    for d in [&node_dir, &app_dir] {
        if d.exists()
            && fs::read_dir(d)
                .map(|mut r| r.next().is_some())
                .unwrap_or(true)
        {
            bail!(
                "{} already exists and is not empty: install into a fresh directory",
                d.display()
            );
        }
    }
    let cache = npm_cache_dir(store);
    if !cache.is_dir() {
        bail!(
            "the store has no npm cache at {}: run `cargo xtask fetch` first",
            cache.display()
        );
    }

    let nl = runtime.node_lock();
    let node_tgz = store.get(&nl.sha256, &store_name(&nl.package, &nl.version))?;
    extract_tgz(&node_tgz, &node_dir, &[])?;
    let node = node_dir.join("bin/node");
    if !node.is_file() {
        bail!("{} has no package/bin/node", node_tgz.display());
    }

    phase("node unpacked");
    write_project(&app_dir, &text, &summary)?;
    let scratch = scratch_dir(store, "npm-install-")?;
    let platform = platform_args(runtime)?;
    let npm = NpmInvocation {
        node: &node,
        npm_cli: &runtime.npm_cli(),
        project: &app_dir,
        scratch: scratch.path(),
        registry,
        cache: &cache,
        online: false,
        env: vec![(
            "SOURCE_DATE_EPOCH".into(),
            source_date_epoch.to_string().into(),
        )],
    };
    let mut args = vec!["ci", "--omit=dev", "--offline", "--no-audit", "--no-fund"];
    args.extend(platform.iter().map(String::as_str));
    npm.run(&args, Duration::from_secs(3600)).map_err(|e| {
        let hint = if format!("{e:#}").contains("ENOTCACHED") {
            "\nthe store's npm cache lacks part of the tree (or was filled through another \
             registry URL): run `cargo xtask fetch`"
        } else {
            ""
        };
        e.context(format!(
            "installing {} into {} offline{hint}",
            lockfile.display(),
            app_dir.display()
        ))
    })?;

    phase("npm ci done");
    let oc = app_dir.join("node_modules/openclaw");
    if oc.join(LIFECYCLE_PENDING).exists() {
        bail!(
            "{}: OpenClaw's package lifecycle did not complete ({LIFECYCLE_PENDING} is still \
             there); its postinstall must run at bake time",
            oc.display()
        );
    }
    remove_caches(&app_dir)?;
    let needles: Vec<String> = [
        out.as_path(),
        scratch.path(),
        store.root(),
        runtime.node_dir().as_path(),
    ]
    .iter()
    .map(|p| p.canonicalize().unwrap_or_else(|_| p.to_path_buf()))
    .map(|p| p.display().to_string())
    .collect();
    let leaks = find_build_paths(&[&node_dir, &app_dir], &needles)?;
    if !leaks.is_empty() {
        let shown: Vec<String> = leaks
            .iter()
            .take(10)
            .map(|p| p.display().to_string())
            .collect();
        bail!(
            "{} file(s) of the installed tree contain a build path ({}): {}",
            leaks.len(),
            needles.join(", "),
            shown.join(", ")
        );
    }
    phase("build paths checked");
    normalize_tree(&node_dir, source_date_epoch)?;
    normalize_tree(&app_dir, source_date_epoch)?;
    normalize_one(&out.join("opt"), source_date_epoch)?;
    phase("modes and mtimes normalised");
    let tree = AppTree::open(&out)?;
    if tree.openclaw_version != summary.openclaw_version {
        bail!(
            "installed openclaw is {}, the lockfile pins {}",
            tree.openclaw_version,
            summary.openclaw_version
        );
    }
    let v = tree.version()?;
    phase(&format!("`openclaw --version`: {v}"));
    if !v.split_whitespace().any(|w| w == tree.openclaw_version) {
        bail!(
            "`openclaw --version` printed `{v}`, expected {}",
            tree.openclaw_version
        );
    }
    Ok(tree)
}

/// The `/usr/local/bin/openclaw` wrapper: runs the CLI `entry` with the
/// locked `node` (both absolute paths in the image).
pub fn wrapper_script(node: &str, entry: &str) -> String {
    format!(
        "#!/bin/sh\n\
         # OpenClaw's CLI with the Node runtime pinned in image.lock.\n\
         # Written by the image builder; changes are lost on the next image.\n\
         exec {} {} \"$@\"\n",
        hostutil::shell_word(node),
        hostutil::shell_word(entry)
    )
}

/// Validates an OpenClaw config with OpenClaw itself:
/// `OPENCLAW_CONFIG_PATH=<config> openclaw config validate --json`, run with
/// the tree's node, a scratch HOME and `OPENCLAW_STATE_DIR`. On rejection the
/// error carries OpenClaw's issues (e.g. `gateway: Unrecognized key: "bnid"`).
pub fn validate_config(app: &AppTree, config_path: &Path) -> Result<()> {
    let config = config_path
        .canonicalize()
        .with_context(|| format!("config file {}", config_path.display()))?;
    let scratch = tempfile::tempdir().context("creating a temporary directory")?;
    let out = app.run_cli(
        &["config", "validate", "--json"],
        scratch.path(),
        vec![("OPENCLAW_CONFIG_PATH".into(), config.clone().into())],
    )?;
    let report = parse_json_output(&out.text);
    let valid = report
        .as_ref()
        .and_then(|r| r.get("valid"))
        .and_then(Value::as_bool);
    if out.success && valid != Some(false) {
        return Ok(());
    }
    let detail = match &report {
        Some(r) => describe_issues(r),
        None => out.tail(20),
    };
    bail!(
        "OpenClaw rejects {} (`openclaw config validate` exit {}):\n{detail}",
        config.display(),
        out.code.map_or("signal".to_string(), |c| c.to_string())
    )
}

/// The JSON document in a CLI's stdout (skipping any lines before it).
fn parse_json_output(text: &str) -> Option<Value> {
    if let Ok(v) = serde_json::from_str(text.trim()) {
        return Some(v);
    }
    let start = text.find("\n{").map(|i| i + 1)?;
    serde_json::from_str(text[start..].trim()).ok()
}

/// `path: message` per issue of an `openclaw config validate --json` report.
fn describe_issues(report: &Value) -> String {
    let mut lines: Vec<String> = report
        .get("issues")
        .and_then(Value::as_array)
        .map(|issues| {
            issues
                .iter()
                .map(|i| {
                    let path = i.get("path").and_then(Value::as_str).unwrap_or("");
                    let msg = i
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("(no message)");
                    if path.is_empty() {
                        format!("  {msg}")
                    } else {
                        format!("  {path}: {msg}")
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    if lines.is_empty() {
        let msg = report
            .pointer("/error/message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| report.to_string());
        lines.push(format!("  {msg}"));
    }
    lines.join("\n")
}

/// Visits every entry below `dir` (not `dir` itself), children before their
/// directory, in name order, without following symlinks.
fn walk(dir: &Path, f: &mut dyn FnMut(&Path, &fs::Metadata) -> Result<()>) -> Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("listing {}", dir.display()))?;
    entries.sort();
    for path in entries {
        let md =
            fs::symlink_metadata(&path).with_context(|| format!("reading {}", path.display()))?;
        if md.is_dir() {
            walk(&path, f)?;
        }
        f(&path, &md)?;
    }
    Ok(())
}

/// Removes build-time caches npm or install scripts may leave
/// (`node_modules/.cache`).
fn remove_caches(app_dir: &Path) -> Result<()> {
    let mut doomed = Vec::new();
    walk(app_dir, &mut |p, md| {
        if md.is_dir()
            && p.file_name().is_some_and(|n| n == ".cache")
            && p.parent()
                .and_then(Path::file_name)
                .is_some_and(|n| n == "node_modules")
        {
            doomed.push(p.to_path_buf());
        }
        Ok(())
    })?;
    for d in doomed {
        fs::remove_dir_all(&d).with_context(|| format!("removing {}", d.display()))?;
    }
    Ok(())
}

/// Files below `dirs` that contain one of `needles`, and symlinks pointing
/// at an absolute path.
fn find_build_paths(dirs: &[&Path], needles: &[String]) -> Result<Vec<PathBuf>> {
    let needles: Vec<&[u8]> = needles
        .iter()
        .map(|n| n.as_bytes())
        .filter(|n| n.len() > 1)
        .collect();
    let mut hits = Vec::new();
    for dir in dirs {
        walk(dir, &mut |p, md| {
            if md.file_type().is_symlink() {
                let target =
                    fs::read_link(p).with_context(|| format!("reading link {}", p.display()))?;
                if target.is_absolute() {
                    hits.push(p.to_path_buf());
                }
            } else if md.is_file() {
                let bytes = fs::read(p).with_context(|| format!("reading {}", p.display()))?;
                if needles.iter().any(|n| contains(&bytes, n)) {
                    hits.push(p.to_path_buf());
                }
            }
            Ok(())
        })?;
    }
    Ok(hits)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

/// Sets modes to 0755 (directories, files with any execute bit) or 0644,
/// and mtimes to `epoch`, below and including `dir`; symlinks get the mtime
/// too (with `touch -h`, std cannot).
fn normalize_tree(dir: &Path, epoch: u64) -> Result<()> {
    let mut links = Vec::new();
    walk(dir, &mut |p, md| {
        if md.file_type().is_symlink() {
            links.push(p.to_path_buf());
            Ok(())
        } else {
            fix_entry(p, md, epoch)
        }
    })?;
    normalize_one(dir, epoch)?;
    for chunk in links.chunks(500) {
        let mut args: Vec<OsString> = vec![
            "-h".into(),
            "-d".into(),
            format!("@{epoch}").into(),
            "--".into(),
        ];
        args.extend(chunk.iter().map(|p| p.as_os_str().to_os_string()));
        let out = run_captured(
            duct::cmd("touch", args),
            "touch -h",
            Duration::from_secs(300),
        )?;
        if !out.success {
            bail!(
                "setting the mtime of symlinks below {}: {}",
                dir.display(),
                out.tail(5)
            );
        }
    }
    Ok(())
}

/// [`normalize_tree`] for one file or directory (not its contents).
fn normalize_one(p: &Path, epoch: u64) -> Result<()> {
    let md = fs::symlink_metadata(p).with_context(|| format!("reading {}", p.display()))?;
    fix_entry(p, &md, epoch)
}

fn fix_entry(p: &Path, md: &fs::Metadata, epoch: u64) -> Result<()> {
    let mode = if md.is_dir() || md.permissions().mode() & 0o111 != 0 {
        0o755
    } else {
        0o644
    };
    if md.permissions().mode() & 0o7777 != mode {
        fs::set_permissions(p, fs::Permissions::from_mode(mode))
            .with_context(|| format!("chmod {}", p.display()))?;
    }
    let when = UNIX_EPOCH + Duration::from_secs(epoch);
    let f = fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
    f.set_times(fs::FileTimes::new().set_modified(when).set_accessed(when))
        .with_context(|| format!("setting the mtime of {}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapper_runs_the_locked_node() {
        let w = wrapper_script(
            "/opt/node/bin/node",
            "/opt/openclaw/node_modules/openclaw/openclaw.mjs",
        );
        assert!(w.starts_with("#!/bin/sh\n"), "{w}");
        assert!(
            w.ends_with(
                "\nexec /opt/node/bin/node /opt/openclaw/node_modules/openclaw/openclaw.mjs \"$@\"\n"
            ),
            "{w}"
        );
        let odd = wrapper_script("/opt/my node/bin/node", "/x/it's.mjs");
        assert!(
            odd.contains("exec '/opt/my node/bin/node' '/x/it'\\''s.mjs' \"$@\""),
            "{odd}"
        );
    }

    #[test]
    fn issues_are_described_with_their_path() {
        let out = r#"{"ok":false,"error":{"type":"cli_error","message":"OpenClaw config is invalid: /c.json5"},
            "valid":false,"path":"/c.json5","issues":[{"path":"gateway","message":"Unrecognized key: \"bnid\""}]}"#;
        let v = parse_json_output(&format!("warning: something\n{out}")).unwrap();
        assert_eq!(describe_issues(&v), "  gateway: Unrecognized key: \"bnid\"");
        let v: Value = serde_json::from_str(r#"{"error":{"message":"boom"}}"#).unwrap();
        assert_eq!(describe_issues(&v), "  boom");
    }

    #[test]
    fn substring_search() {
        assert!(contains(b"abc/var/tmp/x/def", b"/var/tmp/x"));
        assert!(!contains(b"abc/var/tmp/", b"/var/tmp/x"));
        assert!(contains(b"aab", b"ab"));
        assert!(!contains(b"", b"a"));
    }

    #[test]
    fn normalizes_modes_and_times() {
        let d = tempfile::tempdir().unwrap();
        let sub = d.path().join("a");
        fs::create_dir(&sub).unwrap();
        fs::write(sub.join("x"), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(sub.join("x"), fs::Permissions::from_mode(0o700)).unwrap();
        fs::write(sub.join("y"), b"data").unwrap();
        fs::set_permissions(sub.join("y"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::set_permissions(&sub, fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink("x", sub.join("l")).unwrap();
        normalize_tree(d.path(), 1_763_942_400).unwrap();
        let link_mtime = fs::symlink_metadata(sub.join("l"))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(link_mtime, UNIX_EPOCH + Duration::from_secs(1_763_942_400));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&sub), 0o755);
        assert_eq!(mode(&sub.join("x")), 0o755);
        assert_eq!(mode(&sub.join("y")), 0o644);
        let mtime = fs::metadata(sub.join("y")).unwrap().modified().unwrap();
        assert_eq!(mtime, UNIX_EPOCH + Duration::from_secs(1_763_942_400));
        let found = find_build_paths(&[d.path()], &["data".to_string()]).unwrap();
        assert_eq!(found, vec![sub.join("y")]);
    }
}
