//! The content-addressed store: every input, once, under its sha256.
//!
//! Layout: `<root>/inputs/<sha256>-<name>` for fixed-output inputs,
//! `<root>/tmp/` for downloads in flight (renamed into place only after the
//! hash matched). An entry is verified again every time a build asks for it
//! ([`Store::get`]), so a flipped byte is refused, never used.

mod fetch;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use hostutil::sha256_file;

pub use fetch::{FetchReport, Fetcher, Input};

/// A store rooted at a directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// Why a store entry cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// Not in the store at all.
    #[error("`{name}` (sha256 {sha256}) is not in the store {root}: run `cargo xtask fetch`")]
    Missing {
        /// Input name.
        name: String,
        /// Expected hash.
        sha256: String,
        /// Store root.
        root: PathBuf,
    },
    /// In the store, but its bytes no longer hash to its name.
    #[error(
        "store entry {path} is corrupt: expected sha256 {expected}, found {actual}; \
         it was removed, run `cargo xtask fetch` to download it again"
    )]
    Corrupt {
        /// The entry's path.
        path: PathBuf,
        /// The hash in its name.
        expected: String,
        /// The hash of its bytes.
        actual: String,
    },
}

impl Store {
    /// The default root: `$XDG_CACHE_HOME/openclaw-image/store`, else `~/.cache/openclaw-image/store`.
    pub fn default_root() -> Result<PathBuf> {
        let cache = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => {
                let home = std::env::var_os("HOME")
                    .filter(|v| !v.is_empty())
                    .context("neither XDG_CACHE_HOME nor HOME is set: pass --store DIR")?;
                PathBuf::from(home).join(".cache")
            }
        };
        Ok(cache.join("openclaw-image").join("store"))
    }

    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> Result<Store> {
        for sub in ["inputs", "tmp"] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir)
                .with_context(|| format!("creating store directory {}", dir.display()))?;
        }
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the entry for `sha256`/`name` lives (whether or not it exists).
    pub fn entry_path(&self, sha256: &str, name: &str) -> PathBuf {
        self.root.join("inputs").join(format!("{sha256}-{name}"))
    }

    /// A fresh temporary file inside the store (same filesystem: rename is atomic).
    pub fn temp_file(&self) -> Result<tempfile::NamedTempFile> {
        tempfile::NamedTempFile::new_in(self.root.join("tmp")).with_context(|| {
            format!(
                "creating a temporary file in {}",
                self.root.join("tmp").display()
            )
        })
    }

    /// Whether a verified entry exists. A corrupt entry is removed and reported as absent.
    pub fn has_verified(&self, sha256: &str, name: &str) -> Result<bool> {
        match self.get(sha256, name) {
            Ok(_) => Ok(true),
            Err(e) if e.downcast_ref::<EntryError>().is_some() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The path of a verified entry. Re-hashes the bytes first: a corrupt
    /// entry is removed and refused with [`EntryError::Corrupt`].
    pub fn get(&self, sha256: &str, name: &str) -> Result<PathBuf> {
        let path = self.entry_path(sha256, name);
        if !path.exists() {
            return Err(EntryError::Missing {
                name: name.to_string(),
                sha256: sha256.to_string(),
                root: self.root.clone(),
            }
            .into());
        }
        let actual = sha256_file(&path)?;
        if actual != sha256 {
            fs::remove_file(&path)
                .with_context(|| format!("removing corrupt store entry {}", path.display()))?;
            return Err(EntryError::Corrupt {
                path,
                expected: sha256.to_string(),
                actual,
            }
            .into());
        }
        Ok(path)
    }

    /// Moves a finished temporary file into the store after checking its hash.
    pub fn commit(
        &self,
        tmp: tempfile::NamedTempFile,
        sha256: &str,
        name: &str,
    ) -> Result<PathBuf> {
        let actual = sha256_file(tmp.path())?;
        if actual != sha256 {
            bail!("`{name}`: expected sha256 {sha256}, got {actual}; the input was not stored");
        }
        let dest = self.entry_path(sha256, name);
        // Readable by apt's unprivileged `_apt` user, which reads local repositories.
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .with_context(|| format!("setting the mode of {}", tmp.path().display()))?;
        tmp.persist(&dest)
            .with_context(|| format!("moving `{name}` into the store at {}", dest.display()))?;
        Ok(dest)
    }

    /// Copies `src` into the store if its sha256 is `sha256`.
    pub fn insert_file(&self, src: &Path, sha256: &str, name: &str) -> Result<PathBuf> {
        let tmp = self.temp_file()?;
        fs::copy(src, tmp.path())
            .with_context(|| format!("copying {} into the store", src.display()))?;
        self.commit(tmp, sha256, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hostutil::sha256_reader;
    use std::io::Write;

    fn store_with(bytes: &[u8]) -> (tempfile::TempDir, Store, String) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let sha = sha256_reader(bytes).unwrap();
        let mut tmp = store.temp_file().unwrap();
        tmp.write_all(bytes).unwrap();
        store.commit(tmp, &sha, "x.deb").unwrap();
        (dir, store, sha)
    }

    #[test]
    fn verified_entry_is_returned() {
        let (_d, store, sha) = store_with(b"package bytes");
        let p = store.get(&sha, "x.deb").unwrap();
        assert_eq!(fs::read(p).unwrap(), b"package bytes");
    }

    #[test]
    fn flipped_byte_is_refused_and_removed() {
        let (_d, store, sha) = store_with(b"package bytes");
        let path = store.entry_path(&sha, "x.deb");
        let mut bytes = fs::read(&path).unwrap();
        bytes[3] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        let err = store.get(&sha, "x.deb").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("is corrupt"), "{msg}");
        assert!(msg.contains(&sha), "{msg}");
        assert!(!path.exists(), "corrupt entry must be removed");
        assert!(!store.has_verified(&sha, "x.deb").unwrap());
    }

    #[test]
    fn wrong_hash_never_enters() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut tmp = store.temp_file().unwrap();
        tmp.write_all(b"evil").unwrap();
        let want = "0".repeat(64);
        let err = store.commit(tmp, &want, "x.deb").unwrap_err();
        assert!(err.to_string().contains("expected sha256"), "{err}");
        assert!(!store.entry_path(&want, "x.deb").exists());
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn missing_names_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let err = store.get(&"a".repeat(64), "tailscale.tgz").unwrap_err();
        assert!(err.to_string().contains("cargo xtask fetch"), "{err}");
    }
}
