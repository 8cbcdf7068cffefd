//! Crash-safe file writes: temp file in the same directory (created with its
//! final mode and owner before a byte is written), fsync, rename, fsync of
//! the directory. A power cut leaves either the old file or the new one,
//! plus at most a stale temp file, which the next run removes before doing
//! anything else ([`temp_path`] is deterministic for that reason).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::Error;

/// Owner for a written file or directory; `None` leaves the creating
/// process's (tests run unprivileged).
pub type Owner = Option<(u32, u32)>;

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The temp file a write of `path` goes through: `.<name>.firstboot-tmp`
/// beside it.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.firstboot-tmp"))
}

/// Removes a stale temp file of `path` left by an interrupted run.
pub fn remove_stale_temp(path: &Path) -> Result<bool, Error> {
    let tmp = temp_path(path);
    match fs::remove_file(&tmp) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(&tmp)(e)),
    }
}

/// Writes `data` to `path` atomically with `mode` and `owner`, unless the
/// file already has exactly that content, mode and owner.
pub fn ensure_file(path: &Path, mode: u32, owner: Owner, data: &[u8]) -> Result<bool, Error> {
    if let Ok(meta) = fs::symlink_metadata(path) {
        let same_owner = owner.is_none_or(|(u, g)| meta.uid() == u && meta.gid() == g);
        if meta.file_type().is_file()
            && meta.mode() & 0o7777 == mode
            && same_owner
            && meta.len() == data.len() as u64
            && fs::read(path).map_err(io_err(path))? == data
        {
            return Ok(false);
        }
    }
    write_atomic_with(path, mode, owner, |f| f.write_all(data))?;
    Ok(true)
}

/// The atomic write itself; `fill` writes the content. If `fill` (or any
/// later step) fails, the temp file is removed and `path` is untouched.
pub fn write_atomic_with(
    path: &Path,
    mode: u32,
    owner: Owner,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), Error> {
    let dir = path
        .parent()
        .ok_or_else(|| Error::Invalid(format!("{} has no parent directory", path.display())))?;
    let tmp = temp_path(path);
    remove_stale_temp(path)?;
    let result = (|| -> Result<(), Error> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode & 0o600)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid)).map_err(io_err(&tmp))?;
        }
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io_err(&tmp))?;
        fill(&mut f).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        drop(f);
        fs::rename(&tmp, path).map_err(io_err(path))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// fsyncs a directory so a rename in it is durable.
pub fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Creates `path` (and missing parents, root-owned 0755) if needed, then
/// sets its mode and owner.
pub fn ensure_dir(path: &Path, mode: u32, owner: Owner) -> Result<(), Error> {
    // chmod and chown follow symlinks: never let one redirect them.
    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(Error::Invalid(format!(
            "{} is a symlink; refusing to change its target's mode or owner",
            path.display()
        )));
    }
    if !path.is_dir() {
        if let Some(parent) = path.parent().filter(|p| !p.is_dir()) {
            ensure_dir(parent, 0o755, None)?;
        }
        match fs::create_dir(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(path)(e)),
        }
        if let Some(parent) = path.parent() {
            sync_dir(parent)?;
        }
    }
    let meta = fs::metadata(path).map_err(io_err(path))?;
    if let Some((uid, gid)) = owner.filter(|(u, g)| meta.uid() != *u || meta.gid() != *g) {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(io_err(path))?;
    }
    if meta.mode() & 0o7777 != mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err(path))?;
    }
    Ok(())
}

/// Removes a file if it exists.
pub fn remove_file_if_exists(path: &Path) -> Result<bool, Error> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn writes_with_mode_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret.json");
        assert!(ensure_file(&p, 0o600, None, b"{}\n").unwrap());
        assert_eq!(fs::read(&p).unwrap(), b"{}\n");
        assert_eq!(mode(&p), 0o600);
        assert!(!temp_path(&p).exists());
        // Same content and mode: nothing written.
        assert!(!ensure_file(&p, 0o600, None, b"{}\n").unwrap());
        // A mode change alone rewrites.
        assert!(ensure_file(&p, 0o640, None, b"{}\n").unwrap());
        assert_eq!(mode(&p), 0o640);
    }

    /// A writer that fails half-way, as a full disk or an I/O error would.
    fn failing_writer(f: &mut File) -> io::Result<()> {
        f.write_all(b"{\"token\": \"half-writ")?;
        Err(io::Error::other("injected failure"))
    }

    #[test]
    fn failure_mid_write_leaves_no_partial_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("new.json");
        let err = write_atomic_with(&p, 0o600, None, failing_writer).unwrap_err();
        assert!(err.to_string().contains("injected failure"));
        assert!(!p.exists());
        assert!(!temp_path(&p).exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn failure_mid_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("old.json");
        ensure_file(&p, 0o600, None, b"old\n").unwrap();
        write_atomic_with(&p, 0o600, None, failing_writer).unwrap_err();
        assert_eq!(fs::read(&p).unwrap(), b"old\n");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn stale_temp_from_a_crash_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(temp_path(&p), b"partial").unwrap();
        ensure_file(&p, 0o600, None, b"whole").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"whole");
        assert!(!temp_path(&p).exists());
    }

    #[test]
    fn symlinked_dirs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        fs::create_dir(&target).unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).unwrap();
        let link = dir.path().join(".ssh");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(ensure_dir(&link, 0o700, None).is_err());
        assert_eq!(mode(&target), 0o755);
    }

    #[test]
    fn dirs_get_mode() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("a/b/.ssh");
        ensure_dir(&d, 0o700, None).unwrap();
        assert_eq!(mode(&d), 0o700);
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        ensure_dir(&d, 0o700, None).unwrap();
        assert_eq!(mode(&d), 0o700);
    }
}
