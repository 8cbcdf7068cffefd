//! The host's Go toolchain: found once, its version checked against the lock.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// A Go toolchain: the `go` binary inside its GOROOT and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Go {
    /// `<GOROOT>/bin/go`: runs with `GOTOOLCHAIN=local` from here on.
    pub bin: PathBuf,
    /// `go env GOVERSION` (`go1.26.8`).
    pub version: String,
}

impl Go {
    /// The `go` on PATH, asked from `dir` (no go.mod there decides anything).
    /// A `GOTOOLCHAIN=go1.x.y` in the caller's environment is honoured here,
    /// so Go ≥ 1.21 may switch to (and first download) that toolchain; every
    /// later run uses the resolved GOROOT's own binary with
    /// `GOTOOLCHAIN=local`.
    pub fn find(dir: &Path) -> Result<Go> {
        let out = duct::cmd("go", ["env", "GOVERSION", "GOROOT"])
            .dir(dir)
            .env_remove("GOFLAGS")
            .stderr_capture()
            .stdout_capture()
            .unchecked()
            .run();
        let out = match out {
            Ok(o) => o,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "`go` not found on PATH: Tailscale is built from its Go module source; \
                 install Go (the version image.lock names) and put its `bin` on PATH, \
                 or set `source = \"tarball\"` in [tailscale] (docs/tailscale.md); \
                 `cargo xtask doctor` checks it"
            ),
            Err(e) => return Err(e).context("running `go env`"),
        };
        if !out.status.success() {
            bail!(
                "`go env GOVERSION GOROOT` failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let version = lines.next().unwrap_or_default().trim().to_string();
        let root = lines.next().unwrap_or_default().trim().to_string();
        if !version.starts_with("go") || root.is_empty() {
            bail!("`go env GOVERSION GOROOT` printed {text:?}, not a version and a GOROOT");
        }
        Ok(Go {
            bin: Path::new(&root).join("bin/go"),
            version,
        })
    }

    /// Fails unless this is the `locked` toolchain, naming both and the fixes.
    pub fn require(&self, locked: &str) -> Result<()> {
        if self.version == locked {
            return Ok(());
        }
        bail!(
            "Go toolchain mismatch: image.lock pins {locked} (Tailscale's binaries depend on the compiler), \
             but the host's `go` is {}.\n  \
             fix: install {locked} and put it first on PATH, or run with `GOTOOLCHAIN={locked}` \
             in the environment (Go ≥ 1.21 fetches that toolchain through the module proxy and \
             the build then uses it)",
            self.version
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mismatch_names_both_versions_and_the_fix() {
        let go = Go {
            bin: PathBuf::from("/usr/lib/go/bin/go"),
            version: "go1.24.4".into(),
        };
        assert!(go.require("go1.24.4").is_ok());
        let e = go.require("go1.26.8").unwrap_err().to_string();
        assert!(e.contains("go1.26.8") && e.contains("go1.24.4"), "{e}");
        assert!(e.contains("GOTOOLCHAIN=go1.26.8"), "{e}");
    }
}
