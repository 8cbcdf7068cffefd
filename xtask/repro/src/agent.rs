//! The first-boot agent, rebuilt from a copy of the sources at another path.
//!
//! `build-image` caches the agent in `<project>/target/agent`, which both
//! builds of `verify-repro` share, so only a rebuild elsewhere proves that
//! `--remap-path-prefix` and the fixed environment make it reproducible.

use std::fs;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use hostutil::sha256_file;

/// The result of [`agent_check`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentCheck {
    /// Same bytes as build A's agent and no build path inside.
    pub identical: bool,
    /// sha256 of the rebuilt binary.
    pub sha256: String,
    /// sha256 of build A's agent (its manifest's `agent` stage key).
    pub build_a: String,
    /// Where the copy was built.
    pub dir: String,
    /// Build paths found in the binary.
    pub embedded_paths: Vec<String>,
    /// Time the rebuild took.
    pub seconds: u64,
}

impl AgentCheck {
    /// One line for the terminal.
    pub fn summary(&self) -> String {
        if self.identical {
            format!(
                "rebuilt in {} in {} s: same sha256 {}",
                self.dir, self.seconds, self.sha256
            )
        } else {
            format!(
                "rebuilt in {}: sha256 {}, build A's {}; build paths embedded: {}",
                self.dir,
                self.sha256,
                self.build_a,
                if self.embedded_paths.is_empty() {
                    "none".to_string()
                } else {
                    self.embedded_paths.join(", ")
                }
            )
        }
    }
}

/// Copies the sources of the workspace at `project_root` to `copy` (all but
/// `target/` and `.git/`), builds the agent there and compares it with
/// `want` (build A's agent sha256).
pub fn agent_check(project_root: &Path, copy: &Path, epoch: u64, want: &str) -> Result<AgentCheck> {
    copy_sources(project_root, copy)?;
    let started = Instant::now();
    let bin = builder::agent_binary::build(copy, epoch)
        .with_context(|| format!("building the agent in {}", copy.display()))?;
    let sha256 = sha256_file(&bin)?;
    let bytes = fs::read(&bin).with_context(|| format!("reading {}", bin.display()))?;
    let embedded_paths: Vec<String> = [project_root, copy]
        .iter()
        .map(|p| p.display().to_string())
        .filter(|p| memchr::memmem::find(&bytes, p.as_bytes()).is_some())
        .collect();
    Ok(AgentCheck {
        identical: sha256 == want && embedded_paths.is_empty(),
        sha256,
        build_a: want.to_string(),
        dir: copy.display().to_string(),
        embedded_paths,
        seconds: started.elapsed().as_secs(),
    })
}

/// Copies a workspace's sources (everything but `target/` and `.git/`).
pub fn copy_sources(root: &Path, dest: &Path) -> Result<()> {
    fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
    for e in fs::read_dir(root).with_context(|| format!("reading {}", root.display()))? {
        let e = e.with_context(|| format!("reading {}", root.display()))?;
        let n = e.file_name();
        if n == "target" || n == ".git" {
            continue;
        }
        copy_tree(&e.path(), &dest.join(&n))?;
    }
    Ok(())
}

fn copy_tree(src: &Path, dest: &Path) -> Result<()> {
    let m = fs::symlink_metadata(src).with_context(|| format!("reading {}", src.display()))?;
    if m.file_type().is_symlink() {
        let t = fs::read_link(src).with_context(|| format!("reading {}", src.display()))?;
        std::os::unix::fs::symlink(&t, dest)
            .with_context(|| format!("creating {}", dest.display()))?;
    } else if m.is_dir() {
        fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
        for e in fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
            let e = e.with_context(|| format!("reading {}", src.display()))?;
            copy_tree(&e.path(), &dest.join(e.file_name()))?;
        }
    } else if m.is_file() {
        fs::copy(src, dest)
            .with_context(|| format!("copying {} to {}", src.display(), dest.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_copied_without_target_and_git() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        for d in ["target/debug", ".git", "xtask/src"] {
            fs::create_dir_all(src.path().join(d)).unwrap();
        }
        fs::write(src.path().join("Cargo.toml"), "[workspace]").unwrap();
        fs::write(src.path().join("xtask/src/main.rs"), "fn main() {}").unwrap();
        fs::write(src.path().join("target/debug/x"), "big").unwrap();
        std::os::unix::fs::symlink("Cargo.toml", src.path().join("link")).unwrap();
        let out = dst.path().join("copy");
        copy_sources(src.path(), &out).unwrap();
        assert!(out.join("xtask/src/main.rs").is_file());
        assert!(out.join("Cargo.toml").is_file());
        assert!(
            fs::symlink_metadata(out.join("link"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(!out.join("target").exists());
        assert!(!out.join(".git").exists());
    }
}
