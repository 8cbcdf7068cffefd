//! The Tailscale source stage: `tailscale` and `tailscaled` compiled from
//! the locked Go modules, offline.
//!
//! The store's module files are laid out as a `file://` module proxy in the
//! stage's scratch directory; `tailscale.com` is unpacked there and built as
//! the main module with its own go.mod and go.sum (`-mod=readonly`: Go
//! checks every module against that go.sum too), a fresh module and build
//! cache, no network (`GOPROXY=file://…`, `GOSUMDB=off`: the store verified
//! each file's `h1:` already), `GOTOOLCHAIN=local` (the locked toolchain,
//! checked), `CGO_ENABLED=0`, `-trimpath`, `-buildvcs=false`, and the
//! version stamped as Tailscale's `build_dist.sh` does (`-X
//! tailscale.com/version.longStamp=… -X …shortStamp=…`; without git there
//! is no commit hash to add). The unit and defaults file come from the same
//! module (`cmd/tailscaled/`). Built in a temporary directory, renamed into
//! place when complete.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use image_spec::lock::GoModule;
use image_spec::spec::TAILSCALE_MODULE;

use super::Files;
use crate::gomod::resolve::{COMMANDS, unpack_module};
use crate::gomod::store::ModuleStore;
use crate::gomod::toolchain::Go;

/// Bump when the recipe below changes in a way its inputs don't show.
pub const RECIPE: &str = "tailscale-source/v1";

/// The outputs' names inside the stage directory.
const OUTPUTS: [&str; 4] = [
    "tailscale",
    "tailscaled",
    "tailscaled.service",
    "tailscaled.defaults",
];

/// The linker flags of Tailscale's `build_dist.sh` for `version` (`1.102.5`).
pub fn ldflags(version: &str) -> String {
    format!(
        "-X tailscale.com/version.longStamp={version} -X tailscale.com/version.shortStamp={version}"
    )
}

/// What the stage needs.
#[derive(Debug, Clone, Copy)]
pub struct Stage<'a> {
    /// The module files.
    pub store: &'a ModuleStore,
    /// Every locked module (`tailscale.com` among them).
    pub modules: &'a [GoModule],
    /// Tailscale's version (`1.102.5`).
    pub version: &'a str,
    /// The locked toolchain (`go1.26.8`).
    pub go: &'a str,
    /// The stage's cache key.
    pub key: &'a str,
    /// Where stages live.
    pub stage_dir: &'a Path,
    /// `SOURCE_DATE_EPOCH` (not read by `go build`; set for any tool it runs).
    pub epoch: u64,
}

/// The stage's key inputs: recipe, toolchain, ldflags and every module hash.
pub fn key_inputs(modules: &[GoModule], version: &str, go: &str) -> Vec<String> {
    let mut v = vec![RECIPE.to_string(), go.to_string(), ldflags(version)];
    v.extend(modules.iter().map(|m| {
        format!(
            "{} {} {} {}",
            m.path,
            m.version,
            m.zip.as_deref().unwrap_or("-"),
            m.go_mod
        )
    }));
    v
}

/// Builds (or finds cached) the stage; returns its directory.
pub fn build(stage: &Stage<'_>) -> Result<PathBuf> {
    let out = stage.stage_dir.join(format!("tailscale-{}", stage.key));
    if OUTPUTS.iter().all(|f| out.join(f).is_file()) {
        eprintln!("tailscale (Go source): cached ({})", stage.key);
        return Ok(out);
    }
    let tmp = stage
        .stage_dir
        .join(format!(".tailscale-{}.tmp", stage.key));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let go = Go::find(&tmp)?;
    go.require(stage.go)?;
    let version = format!("v{}", stage.version);
    let main = stage
        .modules
        .iter()
        .find(|m| m.path == TAILSCALE_MODULE && m.version == version)
        .with_context(|| {
            format!("image.lock has no {TAILSCALE_MODULE} {version}: run `cargo xtask lock`")
        })?;
    eprintln!(
        "tailscale (Go source): verifying {} modules from the store",
        stage.modules.len()
    );
    let proxy = tmp.join("proxy");
    stage.store.lay_out_proxy(stage.modules, &proxy)?;
    let (_, zip) = stage.store.verified(main)?;
    let zip = zip.context("the tailscale.com module has no zip in the lock")?;
    let src = tmp.join("src");
    unpack_module(&zip, &format!("{TAILSCALE_MODULE}@{version}/"), &src)?;
    let bin = tmp.join("out");
    fs::create_dir_all(&bin).with_context(|| format!("creating {}", bin.display()))?;
    let ldflags = ldflags(stage.version);
    let mut args = vec![
        "build".to_string(),
        "-trimpath".into(),
        "-buildvcs=false".into(),
        format!("-ldflags={ldflags}"),
        "-o".into(),
        format!("{}/", bin.display()),
    ];
    args.extend(COMMANDS.iter().map(|c| c.to_string()));
    let path = std::env::var_os("PATH").unwrap_or_default();
    let proxy_url = format!("file://{}", proxy.display());
    let env: Vec<(&str, std::ffi::OsString)> = vec![
        ("PATH", path),
        ("HOME", tmp.join("home").into()),
        ("GOPATH", tmp.join("gopath").into()),
        ("GOMODCACHE", tmp.join("modcache").into()),
        ("GOCACHE", tmp.join("gocache").into()),
        ("GOPROXY", proxy_url.into()),
        ("GOSUMDB", "off".into()),
        ("GOFLAGS", "-mod=readonly -modcacherw".into()),
        ("GOTOOLCHAIN", "local".into()),
        ("GOWORK", "off".into()),
        ("GOENV", "off".into()),
        ("GOTELEMETRY", "off".into()),
        ("CGO_ENABLED", "0".into()),
        ("GOOS", "linux".into()),
        ("GOARCH", "amd64".into()),
        ("GOAMD64", "v1".into()),
        ("SOURCE_DATE_EPOCH", stage.epoch.to_string().into()),
        ("TZ", "UTC".into()),
        ("LC_ALL", "C".into()),
    ];
    eprintln!(
        "tailscale (Go source): compiling {} {} with {} offline ({} modules; a few minutes on 2 cores)",
        TAILSCALE_MODULE,
        version,
        go.version,
        stage.modules.len()
    );
    let cmd = duct::cmd(&go.bin, &args)
        .dir(&src)
        .full_env(env)
        .stdout_capture()
        .stderr_capture()
        .unchecked();
    let started = Instant::now();
    let handle = cmd
        .start()
        .with_context(|| format!("starting {}", go.bin.display()))?;
    let mut next = Duration::from_secs(30);
    let output = loop {
        if let Some(o) = handle.try_wait().context("waiting for `go build`")? {
            break o.clone();
        }
        if started.elapsed() >= next {
            eprintln!(
                "tailscale (Go source): still compiling ({:.0?})",
                started.elapsed()
            );
            next += Duration::from_secs(30);
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = err.lines().rev().take(20).collect();
        bail!(
            "`go {}` in {} failed ({}):\n{}",
            args.join(" "),
            src.display(),
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    for (from, to) in [
        ("cmd/tailscaled/tailscaled.service", "tailscaled.service"),
        ("cmd/tailscaled/tailscaled.defaults", "tailscaled.defaults"),
    ] {
        fs::copy(src.join(from), bin.join(to))
            .with_context(|| format!("copying {from} of {TAILSCALE_MODULE} {version}"))?;
    }
    fs::rename(&bin, &out).with_context(|| format!("renaming into {}", out.display()))?;
    fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    eprintln!(
        "tailscale (Go source): built in {:.0?} ({})",
        started.elapsed(),
        stage.key
    );
    Ok(out)
}

/// `fetch`'s part: every locked Go module into the store, verified.
/// Returns a one-line summary, or `None` when the lock builds no source.
pub fn fetch_modules(
    store: &crate::store::Store,
    lock: &image_spec::Lock,
) -> Result<Option<String>> {
    if lock.gomods.is_empty() {
        return Ok(None);
    }
    let started = Instant::now();
    let modules = ModuleStore::new(store);
    let scratch = store.root().join("tmp");
    fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let go = Go::find(&scratch)?;
    if let Some(locked) = &lock.tailscale.go
        && let Err(e) = go.require(locked)
    {
        eprintln!("warning: build-image will refuse this toolchain: {e:#}");
    }
    let downloaded = modules.fetch(&go, &lock.gomods)?;
    Ok(Some(format!(
        "{} Go modules verified ({downloaded} downloaded) in {:.1?}",
        lock.gomods.len(),
        started.elapsed()
    )))
}

/// The four files of a built stage directory.
pub fn files(dir: &Path) -> Result<Files> {
    let read = |name: &str| {
        fs::read(dir.join(name)).with_context(|| format!("reading {}", dir.join(name).display()))
    };
    Ok(Files {
        tailscale: read(OUTPUTS[0])?,
        tailscaled: read(OUTPUTS[1])?,
        service: read(OUTPUTS[2])?,
        defaults: read(OUTPUTS[3])?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldflags_stamp_the_version_as_build_dist_does() {
        assert_eq!(
            ldflags("1.102.5"),
            "-X tailscale.com/version.longStamp=1.102.5 -X tailscale.com/version.shortStamp=1.102.5"
        );
    }

    #[test]
    fn the_key_moves_with_any_module_hash() {
        let m = GoModule {
            path: "github.com/kr/fs".into(),
            version: "v0.1.0".into(),
            zip: Some("h1:Jskdu9ieNAYnjxsi0LbQp1ulIKZV1LAFgK1tWhpZgl8=".into()),
            go_mod: "h1:FFnZGqtBN9Gxj7eW1uZ42v5BccTP0vu6NEaFoC2HwRg=".into(),
        };
        let mut other = m.clone();
        other.zip = Some("h1:AAAA".into());
        let a = key_inputs(&[m], "1.102.5", "go1.26.8");
        assert_ne!(a, key_inputs(&[other], "1.102.5", "go1.26.8"));
        assert!(a.contains(&"go1.26.8".to_string()));
    }
}
