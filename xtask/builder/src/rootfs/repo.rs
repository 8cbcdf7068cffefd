//! A local, flat apt repository made of verified store entries, so that
//! mmdebstrap installs exactly the locked packages and nothing else.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use image_spec::lock::Lock;

use crate::store::Store;

/// A repository directory: `pool/` with the `.deb`s and
/// `dists/<suite>/{Release,main/binary-<arch>/Packages}`. A real suite (not
/// a flat repository) because mmdebstrap selects the essential set by
/// archive/codename.
#[derive(Debug, Clone)]
pub struct LocalRepo {
    dir: PathBuf,
    suite: String,
}

impl LocalRepo {
    /// Builds the repository for the closure `set` of `lock` in `dir`
    /// (recreated). Every `.deb` is verified against its locked sha256 first
    /// (SUP-1): a mismatch aborts.
    pub fn create(
        dir: &Path,
        store: &Store,
        lock: &Lock,
        set: &str,
        suite: &str,
    ) -> Result<LocalRepo> {
        if dir.exists() {
            fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        let pool = dir.join("pool");
        let arch = lock.inputs.architecture.as_str();
        let index_dir = dir
            .join("dists")
            .join(suite)
            .join("main")
            .join(format!("binary-{arch}"));
        for d in [&pool, &index_dir] {
            fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let mut packages = String::new();
        let mut count = 0;
        for deb in lock.closure(set) {
            let src = store.get(&deb.sha256, deb.file_name()).with_context(|| {
                format!(
                    "locked package {} {} of the `{set}` closure",
                    deb.name, deb.version
                )
            })?;
            let dest = pool.join(deb.file_name());
            fs::hard_link(&src, &dest)
                .or_else(|_| fs::copy(&src, &dest).map(|_| ()))
                .with_context(|| format!("linking {} into {}", src.display(), dir.display()))?;
            let control = duct::cmd("dpkg-deb", ["--field".as_ref(), dest.as_os_str()])
                .stderr_capture()
                .read()
                .with_context(|| format!("reading the control fields of {}", dest.display()))?;
            if !control
                .lines()
                .any(|l| l == format!("Package: {}", deb.name))
            {
                bail!("{} does not contain package {}", dest.display(), deb.name);
            }
            packages.push_str(control.trim_end());
            let _ = write!(
                packages,
                "\nFilename: pool/{}\nSize: {}\nSHA256: {}\n\n",
                deb.file_name(),
                deb.size,
                deb.sha256
            );
            count += 1;
        }
        if count == 0 {
            bail!("the lock has no packages in the `{set}` closure: run `cargo xtask lock`");
        }
        crate::fsutil::write_atomic(&index_dir.join("Packages"), packages.as_bytes())?;
        let sha = hostutil::sha256_reader(packages.as_bytes()).context("hashing Packages")?;
        let release = format!(
            "Origin: openclaw-image\nLabel: locked {set} closure\nSuite: {suite}\nCodename: {suite}\n\
             Architectures: {arch} all\nComponents: main\nSHA256:\n {sha} {} main/binary-{arch}/Packages\n",
            packages.len()
        );
        crate::fsutil::write_atomic(
            &dir.join("dists").join(suite).join("Release"),
            release.as_bytes(),
        )?;
        Ok(LocalRepo {
            dir: dir.to_path_buf(),
            suite: suite.to_string(),
        })
    }

    /// The apt source line for mmdebstrap (`copy://`: apt copies the `.deb`s
    /// into the chroot, which mmdebstrap needs to extract the essential set).
    pub fn source_line(&self) -> String {
        format!(
            "deb [trusted=yes] copy://{} {} main",
            self.dir.display(),
            self.suite
        )
    }
}
