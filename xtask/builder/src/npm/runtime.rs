//! The locked Node and npm, unpacked from the store, and how npm is run:
//! always `<locked node> <npm>/bin/npm-cli.js` with a project-owned npmrc,
//! HOME, cache and an explicit environment (nothing inherited from the
//! user's npm configuration).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use image_spec::lock::NpmPackageLock;
use image_spec::semver::{Range, Version};

use super::http::host_ca_files;
use crate::store::Store;

/// Store name of a registry tarball: `<package>-<version>.tgz`.
pub fn store_name(package: &str, version: &str) -> String {
    let unscoped = package.rsplit('/').next().unwrap_or(package);
    format!("{unscoped}-{version}.tgz")
}

/// The locked Node binary and npm CLI, unpacked into a temporary directory
/// (removed on drop) for running npm on the build host.
#[derive(Debug)]
pub struct Runtime {
    dir: tempfile::TempDir,
    node: NpmPackageLock,
    npm: NpmPackageLock,
}

impl Runtime {
    /// Unpacks `bin/node` of the locked Node and the whole locked npm package
    /// from the store (each verified by sha256 on the way), and checks that
    /// the binary reports the locked version and satisfies npm's `engines.node`.
    pub fn new(store: &Store, node: &NpmPackageLock, npm: &NpmPackageLock) -> Result<Runtime> {
        let node_tgz = store.get(&node.sha256, &store_name(&node.package, &node.version))?;
        let npm_tgz = store.get(&npm.sha256, &store_name(&npm.package, &npm.version))?;
        let dir = tempfile::Builder::new()
            .prefix("npm-runtime-")
            .tempdir_in(store.root().join("tmp"))
            .with_context(|| {
                format!(
                    "creating a directory in {}",
                    store.root().join("tmp").display()
                )
            })?;
        extract_tgz(&node_tgz, &dir.path().join("node"), &["package/bin/node"])?;
        extract_tgz(&npm_tgz, &dir.path().join("npm"), &[])?;
        let rt = Runtime {
            dir,
            node: node.clone(),
            npm: npm.clone(),
        };
        let out = run_captured(
            duct::cmd(rt.node_bin(), ["--version"])
                .full_env(base_env(&rt.node_dir(), rt.dir.path())),
            &format!("{} --version", rt.node_bin().display()),
            Duration::from_secs(60),
        )?;
        if !out.success || out.text.trim().trim_start_matches('v') != node.version {
            bail!(
                "the locked Node {} ({}) reports `{}`: the store entry does not hold that version",
                node.version,
                node_tgz.display(),
                out.text.trim()
            );
        }
        let pkg_json = rt.dir.path().join("npm/package.json");
        let pkg: serde_json::Value = serde_json::from_str(&super::http::read_text(&pkg_json)?)
            .with_context(|| format!("{} is not JSON", pkg_json.display()))?;
        if let Some(engines) = pkg.pointer("/engines/node").and_then(|v| v.as_str()) {
            let range: Range = expand_caret_tilde(engines).parse().map_err(|e| {
                anyhow::anyhow!("npm {}'s engines.node `{engines}`: {e}", npm.version)
            })?;
            let v: Version = node
                .version
                .parse()
                .map_err(|e| anyhow::anyhow!("node.version `{}`: {e}", node.version))?;
            if !range.matches(v) {
                bail!(
                    "npm {} needs Node `{engines}`, but node.version is {}: pin another npm \
                     (builder::npm::NPM_VERSION) or Node",
                    npm.version,
                    node.version
                );
            }
        }
        Ok(rt)
    }

    /// The unpacked `node` binary.
    pub fn node_bin(&self) -> PathBuf {
        self.node_dir().join("node")
    }

    /// The directory holding `node` (first on `PATH` for npm and its scripts).
    pub fn node_dir(&self) -> PathBuf {
        self.dir.path().join("node/bin")
    }

    /// npm's entry point, `bin/npm-cli.js`.
    pub fn npm_cli(&self) -> PathBuf {
        self.dir.path().join("npm/bin/npm-cli.js")
    }

    /// The Node lock this runtime was made from.
    pub fn node_lock(&self) -> &NpmPackageLock {
        &self.node
    }

    /// The npm lock this runtime was made from.
    pub fn npm_lock(&self) -> &NpmPackageLock {
        &self.npm
    }
}

/// Rewrites `^X.Y.Z` and `~X.Y.Z` comparators into the `>=`/`<` pairs that
/// [`Range`] understands (npm's own `engines` use carets).
pub(crate) fn expand_caret_tilde(range: &str) -> String {
    let expand = |comp: &str| -> Option<String> {
        let (caret, rest) = match comp.strip_prefix('^') {
            Some(r) => (true, r),
            None => (false, comp.strip_prefix('~')?),
        };
        let v: Version = rest.parse().ok()?;
        let upper = if caret && v.major > 0 {
            format!("{}.0.0", v.major + 1)
        } else {
            format!("{}.{}.0", v.major, v.minor + 1)
        };
        Some(format!(">={v} <{upper}"))
    };
    range
        .split("||")
        .map(|set| {
            set.split_whitespace()
                .map(|c| expand(c).unwrap_or_else(|| c.to_string()))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join(" || ")
}

/// Unpacks a registry tarball (entries below `package/`) into `dest`,
/// stripping the `package/` prefix. `members` limits what is unpacked.
/// Modes come from the archive (`-p`), owners do not.
pub(crate) fn extract_tgz(tgz: &Path, dest: &Path, members: &[&str]) -> Result<()> {
    std::fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
    let mut args: Vec<OsString> = vec![
        "-x".into(),
        "-z".into(),
        "-p".into(),
        "--no-same-owner".into(),
        "--strip-components=1".into(),
        "-f".into(),
        tgz.into(),
        "-C".into(),
        dest.into(),
    ];
    args.extend(members.iter().map(OsString::from));
    let out = run_captured(
        duct::cmd("tar", args),
        &format!("tar -xzf {} -C {}", tgz.display(), dest.display()),
        Duration::from_secs(600),
    )?;
    if !out.success {
        bail!(
            "unpacking {} into {} failed: {}",
            tgz.display(),
            dest.display(),
            out.tail(20)
        );
    }
    Ok(())
}

/// Captured output of a finished command.
#[derive(Debug)]
pub(crate) struct Captured {
    pub success: bool,
    pub code: Option<i32>,
    pub text: String,
    pub stderr: String,
}

impl Captured {
    /// The last `n` lines of the combined output, for error messages.
    pub fn tail(&self, n: usize) -> String {
        let all = format!("{}{}", self.text, self.stderr);
        let lines: Vec<&str> = all.lines().collect();
        let start = lines.len().saturating_sub(n);
        lines[start..].join("\n")
    }
}

/// Runs `expr` capturing stdout and stderr (separately), killing it after `timeout`.
pub(crate) fn run_captured(
    expr: duct::Expression,
    what: &str,
    timeout: Duration,
) -> Result<Captured> {
    let handle = expr
        .stdout_capture()
        .stderr_capture()
        .stdin_null()
        .unchecked()
        .start()
        .with_context(|| format!("starting `{what}`"))?;
    match handle
        .wait_timeout(timeout)
        .with_context(|| format!("waiting for `{what}`"))?
    {
        Some(_) => {}
        None => {
            let _ = handle.kill();
            bail!("`{what}` did not finish within {timeout:?} and was killed");
        }
    }
    let out = handle
        .into_output()
        .with_context(|| format!("waiting for `{what}`"))?;
    Ok(Captured {
        success: out.status.success(),
        code: out.status.code(),
        text: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// The environment every child starts from: the locked node first on
/// `PATH`, HOME and TMPDIR in `scratch`, UTC, C.UTF-8, no compile cache.
/// Nothing else is inherited (no `npm_config_*`, no `NODE_OPTIONS`).
pub(crate) fn base_env(node_dir: &Path, scratch: &Path) -> Vec<(OsString, OsString)> {
    let mut path = OsString::from(node_dir);
    path.push(":/usr/bin:/bin");
    vec![
        ("PATH".into(), path),
        ("HOME".into(), scratch.join("home").into()),
        ("TMPDIR".into(), scratch.join("tmp").into()),
        ("TZ".into(), "UTC".into()),
        ("LC_ALL".into(), "C.UTF-8".into()),
        ("NODE_DISABLE_COMPILE_CACHE".into(), "1".into()),
        ("NO_COLOR".into(), "1".into()),
    ]
}

/// What the network needs from the host: its CA bundle (Node's own roots do
/// not include a mirror's or an inspecting proxy's CA) and proxy settings.
pub(crate) fn network_env() -> Vec<(OsString, OsString)> {
    let mut env = Vec::new();
    if let Some(ca) = host_ca_files().into_iter().next() {
        // NODE_EXTRA_CA_CERTS adds to Node's bundled roots; it takes one file.
        let ca = std::env::var_os("NODE_EXTRA_CA_CERTS")
            .filter(|v| !v.is_empty() && Path::new(v).is_file())
            .unwrap_or_else(|| ca.into_os_string());
        env.push(("NODE_EXTRA_CA_CERTS".into(), ca));
    }
    for var in [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        if let Some(v) = std::env::var_os(var) {
            env.push((var.into(), v));
        }
    }
    env
}

/// How one npm run is set up.
pub(crate) struct NpmInvocation<'a> {
    /// The node binary that runs npm (its directory goes first on PATH).
    pub node: &'a Path,
    /// `bin/npm-cli.js` of the locked npm.
    pub npm_cli: &'a Path,
    /// The project directory (cwd).
    pub project: &'a Path,
    /// Scratch directory: HOME, TMPDIR, logs, npmrc.
    pub scratch: &'a Path,
    /// Registry root URL (no trailing slash).
    pub registry: &'a str,
    /// npm cache directory.
    pub cache: &'a Path,
    /// Whether the network is used (passes CA bundle and proxies).
    pub online: bool,
    /// Extra environment.
    pub env: Vec<(OsString, OsString)>,
}

/// The project-owned npmrc: the registry and no side channels.
pub(crate) fn npmrc_text(registry: &str) -> String {
    format!(
        "registry={}/\n\
         omit-lockfile-registry-resolved=true\n\
         lockfile-version=3\n\
         fund=false\n\
         audit=false\n\
         update-notifier=false\n\
         progress=false\n\
         color=false\n",
        registry.trim_end_matches('/')
    )
}

impl NpmInvocation<'_> {
    /// Runs `npm <args>`; fails with npm's last lines of output on rc != 0.
    pub fn run(&self, args: &[&str], timeout: Duration) -> Result<Captured> {
        for sub in ["home", "tmp", "logs"] {
            let d = self.scratch.join(sub);
            std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        }
        let npmrc = self.scratch.join("npmrc");
        std::fs::write(&npmrc, npmrc_text(self.registry))
            .with_context(|| format!("writing {}", npmrc.display()))?;
        let node_dir = self.node.parent().unwrap_or(Path::new("/"));
        let mut env = base_env(node_dir, self.scratch);
        if self.online {
            env.extend(network_env());
        }
        env.extend(self.env.iter().cloned());
        let mut argv: Vec<OsString> = vec![self.npm_cli.into()];
        argv.extend(args.iter().map(OsString::from));
        for (flag, value) in [
            ("--userconfig", npmrc.clone()),
            ("--globalconfig", self.scratch.join("npmrc-global")),
            ("--cache", self.cache.to_path_buf()),
            ("--logs-dir", self.scratch.join("logs")),
        ] {
            argv.push(flag.into());
            argv.push(value.into());
        }
        let what = format!("npm {} (in {})", args.join(" "), self.project.display());
        let out = run_captured(
            duct::cmd(self.node, argv).dir(self.project).full_env(env),
            &what,
            timeout,
        )?;
        if !out.success {
            bail!(
                "`{what}` failed (exit {}):\n{}",
                out.code.map_or("signal".to_string(), |c| c.to_string()),
                out.tail(40)
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caret_and_tilde() {
        let r = expand_caret_tilde("^20.17.0 || >=22.9.0");
        assert_eq!(r, ">=20.17.0 <21.0.0 || >=22.9.0");
        let range: Range = r.parse().unwrap();
        assert!(range.matches("24.21.0".parse().unwrap()));
        assert!(range.matches("20.17.0".parse().unwrap()));
        assert!(!range.matches("21.0.0".parse().unwrap()));
        assert_eq!(expand_caret_tilde("~1.2.3"), ">=1.2.3 <1.3.0");
        assert_eq!(expand_caret_tilde("^0.2.3"), ">=0.2.3 <0.3.0");
    }
}
