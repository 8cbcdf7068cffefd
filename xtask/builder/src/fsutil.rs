//! Small filesystem helpers: atomic writes, stdout kept for a report.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result};

/// Points this process's stdout (fd 1, which every child inherits) at its
/// stderr and returns the original stdout: a `--json` report written there
/// is the only thing on it, whatever a child tool prints.
pub fn divert_stdout() -> Result<std::fs::File> {
    use std::os::fd::AsFd;
    std::io::stdout().flush().context("flushing stdout")?;
    let original = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .context("duplicating stdout")?;
    rustix::stdio::dup2_stdout(std::io::stderr().as_fd()).context("pointing stdout at stderr")?;
    Ok(std::fs::File::from(original))
}

/// Writes `bytes` to `path` atomically: a temp file in the same directory,
/// fsync, then rename. A reader sees the old file or the new one, never half.
/// The file is world-readable (0644): the builder writes no secrets.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| {
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))
        })
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    tmp.persist(path)
        .with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}
