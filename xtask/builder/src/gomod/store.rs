//! Go module files in the store, verified by their `h1:` before they enter
//! and whenever a build reads them.
//!
//! Layout: `<store>/gomod/<escaped path>/@v/<version>.{mod,zip}`, the module
//! proxy's own layout (Go's content address is module@version pinned by its
//! `h1:`, not a sha256 of the zip's bytes, which a proxy may recompress).
//! [`ModuleStore::lay_out_proxy`] links the locked files into a directory
//! that `GOPROXY=file://…` serves, adding the `.info` files.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use image_spec::lock::GoModule;
use serde::Deserialize;

use super::dirhash::{hash_go_mod, hash_zip};
use super::escape_path;
use super::toolchain::Go;
use crate::store::Store;

/// Go module files inside a [`Store`].
#[derive(Debug, Clone)]
pub struct ModuleStore {
    root: PathBuf,
    tmp: PathBuf,
}

/// Where one module's files live below a proxy-layout root.
fn files_of(root: &Path, m: &GoModule) -> (PathBuf, PathBuf) {
    let dir = root.join(escape_path(&m.path)).join("@v");
    (
        dir.join(format!("{}.mod", m.version)),
        dir.join(format!("{}.zip", m.version)),
    )
}

/// A wrong `h1:`: what, expected, actual, and the fix.
fn mismatch(m: &GoModule, what: &str, expected: &str, actual: &str, fix: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "Go module {} {}: the {what} hashes to {actual}, image.lock pins {expected}; {fix}",
        m.path,
        m.version
    )
}

impl ModuleStore {
    /// The module area of `store`.
    pub fn new(store: &Store) -> ModuleStore {
        ModuleStore {
            root: store.root().join("gomod"),
            tmp: store.root().join("tmp"),
        }
    }

    /// Whether both locked files of `m` are there and hash as locked.
    pub fn has_verified(&self, m: &GoModule) -> bool {
        self.verified(m).is_ok()
    }

    /// The paths of `m`'s `.mod` and (if locked) `.zip`, re-hashed first.
    pub fn verified(&self, m: &GoModule) -> Result<(PathBuf, Option<PathBuf>)> {
        let (mod_path, zip_path) = files_of(&self.root, m);
        let fix = "run `cargo xtask fetch` (a damaged file is replaced)";
        let data = fs::read(&mod_path).with_context(|| {
            format!(
                "Go module {} {} is not in the store ({}): run `cargo xtask fetch`",
                m.path,
                m.version,
                mod_path.display()
            )
        })?;
        let actual = hash_go_mod(&data);
        if actual != m.go_mod {
            return Err(mismatch(m, "stored go.mod", &m.go_mod, &actual, fix));
        }
        let Some(want) = &m.zip else {
            return Ok((mod_path, None));
        };
        let file = fs::File::open(&zip_path).with_context(|| {
            format!(
                "Go module {} {} has no zip in the store ({}): run `cargo xtask fetch`",
                m.path,
                m.version,
                zip_path.display()
            )
        })?;
        let actual = hash_zip(std::io::BufReader::new(file))
            .with_context(|| format!("reading {}", zip_path.display()))?;
        if &actual != want {
            return Err(mismatch(m, "stored zip", want, &actual, fix));
        }
        Ok((mod_path, Some(zip_path)))
    }

    /// Checks the downloaded `go_mod` and `zip` of `m` against the lock and,
    /// only if both match, moves copies into the store.
    pub fn insert(&self, m: &GoModule, go_mod: &Path, zip: Option<&Path>) -> Result<()> {
        let fix = "it was not stored. The module proxy served other bytes than those the lock \
                   was made from (a tampered or re-tagged module): check GOPROXY, and if the \
                   change is wanted, re-resolve with `cargo xtask lock --update`";
        let data = fs::read(go_mod).with_context(|| format!("reading {}", go_mod.display()))?;
        let actual = hash_go_mod(&data);
        if actual != m.go_mod {
            return Err(mismatch(m, "downloaded go.mod", &m.go_mod, &actual, fix));
        }
        let (mod_dest, zip_dest) = files_of(&self.root, m);
        if let Some(want) = &m.zip {
            let zip = zip.with_context(|| {
                format!("Go module {} {}: no zip was downloaded", m.path, m.version)
            })?;
            let file = fs::File::open(zip).with_context(|| format!("opening {}", zip.display()))?;
            let actual = hash_zip(std::io::BufReader::new(file)).with_context(|| {
                format!(
                    "Go module {} {}: reading {}",
                    m.path,
                    m.version,
                    zip.display()
                )
            })?;
            if &actual != want {
                return Err(mismatch(m, "downloaded zip", want, &actual, fix));
            }
            self.put(zip, &zip_dest)?;
        }
        self.put(go_mod, &mod_dest)
    }

    /// Copies `src` to `dest` through a temporary file (never half a file).
    fn put(&self, src: &Path, dest: &Path) -> Result<()> {
        let dir = dest.parent().context("a store path without parent")?;
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = tempfile::NamedTempFile::new_in(&self.tmp)
            .with_context(|| format!("creating a temporary file in {}", self.tmp.display()))?;
        fs::copy(src, tmp.path()).with_context(|| format!("copying {}", src.display()))?;
        tmp.persist(dest)
            .with_context(|| format!("moving into {}", dest.display()))?;
        Ok(())
    }

    /// Downloads what is missing of `modules` with `go mod download` (the
    /// host's GOPROXY, a throw-away module cache) and stores it verified.
    /// Returns how many modules were downloaded.
    pub fn fetch(&self, go: &Go, modules: &[GoModule]) -> Result<usize> {
        let missing: Vec<&GoModule> = modules.iter().filter(|m| !self.has_verified(m)).collect();
        if missing.is_empty() {
            return Ok(0);
        }
        eprintln!(
            "fetch: {} of {} Go modules with `go mod download`",
            missing.len(),
            modules.len()
        );
        fs::create_dir_all(&self.tmp)
            .with_context(|| format!("creating {}", self.tmp.display()))?;
        let work = tempfile::tempdir_in(&self.tmp)
            .with_context(|| format!("creating a directory in {}", self.tmp.display()))?;
        let args: Vec<String> = ["mod", "download", "-json"]
            .into_iter()
            .map(String::from)
            .chain(missing.iter().map(|m| format!("{}@{}", m.path, m.version)))
            .collect();
        let downloads = download(go, work.path(), &args, false)?;
        let count = missing.len();
        for m in missing {
            let d = downloads
                .iter()
                .find(|d| d.path == m.path && d.version == m.version)
                .with_context(|| {
                    format!("`go mod download` said nothing of {} {}", m.path, m.version)
                })?;
            if let Some(e) = &d.error {
                bail!(
                    "Go module {} {} cannot be downloaded: {e}\n  fix: check GOPROXY (`go env GOPROXY`) and the network",
                    m.path,
                    m.version
                );
            }
            let go_mod = d
                .go_mod
                .as_deref()
                .context("`go mod download` gave no go.mod")?;
            self.insert(m, Path::new(go_mod), d.zip.as_deref().map(Path::new))?;
        }
        Ok(count)
    }

    /// Lays the locked files out below `dir` as a module proxy
    /// (`<escaped path>/@v/<version>.{mod,zip,info}`), verified; hard links
    /// where the filesystem allows, else copies.
    pub fn lay_out_proxy(&self, modules: &[GoModule], dir: &Path) -> Result<()> {
        for m in modules {
            let (mod_src, zip_src) = self.verified(m)?;
            let (mod_dest, zip_dest) = files_of(dir, m);
            let at = mod_dest.parent().context("a proxy path without parent")?;
            fs::create_dir_all(at).with_context(|| format!("creating {}", at.display()))?;
            link_or_copy(&mod_src, &mod_dest)?;
            if let Some(zip_src) = zip_src {
                link_or_copy(&zip_src, &zip_dest)?;
            }
            let info = at.join(format!("{}.info", m.version));
            fs::write(&info, format!("{{\"Version\":\"{}\"}}\n", m.version))
                .with_context(|| format!("writing {}", info.display()))?;
        }
        Ok(())
    }
}

fn link_or_copy(src: &Path, dest: &Path) -> Result<()> {
    if fs::hard_link(src, dest).is_ok() {
        return Ok(());
    }
    fs::copy(src, dest)
        .map(|_| ())
        .with_context(|| format!("copying {} to {}", src.display(), dest.display()))
}

/// One object of `go mod download -json`'s output.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Download {
    pub path: String,
    pub version: String,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub zip: Option<String>,
    #[serde(default)]
    pub go_mod: Option<String>,
    #[serde(default)]
    pub sum: Option<String>,
    #[serde(default)]
    pub go_mod_sum: Option<String>,
}

/// Runs `go <args>` (a `mod download -json …`) in `work`, with a fresh
/// module cache there and the host's proxy settings. Without `sumdb` no
/// checksum database is asked (the caller verifies every file against the
/// lock itself); with it, the host's `GOSUMDB` checks what is downloaded.
pub(crate) fn download(
    go: &Go,
    work: &Path,
    args: &[String],
    sumdb: bool,
) -> Result<Vec<Download>> {
    let mut cmd = duct::cmd(&go.bin, args)
        .dir(work)
        .env("GOMODCACHE", work.join("modcache"))
        .env("GOFLAGS", "-modcacherw")
        .env("GOTOOLCHAIN", "local")
        .env("GOWORK", "off");
    if !sumdb {
        cmd = cmd.env("GOSUMDB", "off");
    }
    let out = cmd
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .with_context(|| format!("running {} {}", go.bin.display(), args.join(" ")))?;
    let downloads = parse_downloads(&out.stdout)?;
    if !out.status.success() && downloads.iter().all(|d| d.error.is_none()) {
        bail!(
            "`go {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(downloads)
}

/// The concatenated JSON objects `go mod download -json` prints.
pub(crate) fn parse_downloads(stdout: &[u8]) -> Result<Vec<Download>> {
    serde_json::Deserializer::from_slice(stdout)
        .into_iter::<Download>()
        .collect::<Result<Vec<_>, _>>()
        .context("parsing the output of `go mod download -json`")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gomod::fixture::{MOD, ZIP, kr_fs};

    fn setup() -> (tempfile::TempDir, ModuleStore, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let zip = dir.path().join("v0.1.0.zip");
        let go_mod = dir.path().join("v0.1.0.mod");
        fs::write(&zip, ZIP).unwrap();
        fs::write(&go_mod, MOD).unwrap();
        (dir, ModuleStore::new(&store), zip, go_mod)
    }

    #[test]
    fn a_verified_module_is_laid_out_as_a_proxy() {
        let (dir, store, zip, go_mod) = setup();
        let m = kr_fs();
        assert!(!store.has_verified(&m));
        store.insert(&m, &go_mod, Some(&zip)).unwrap();
        assert!(store.has_verified(&m));
        let proxy = dir.path().join("proxy");
        store.lay_out_proxy(&[m], &proxy).unwrap();
        let v = proxy.join("github.com/kr/fs/@v");
        assert_eq!(fs::read(v.join("v0.1.0.zip")).unwrap(), ZIP);
        assert_eq!(fs::read(v.join("v0.1.0.mod")).unwrap(), MOD);
        assert_eq!(
            fs::read_to_string(v.join("v0.1.0.info")).unwrap(),
            "{\"Version\":\"v0.1.0\"}\n"
        );
    }

    #[test]
    fn a_tampered_zip_never_enters_and_the_error_says_why() {
        let (_dir, store, zip, go_mod) = setup();
        // A renamed file (local header and central directory): the zip
        // still reads, its content is another module's.
        let mut bytes = ZIP.to_vec();
        for at in 0..bytes.len() - 6 {
            if &bytes[at..at + 6] == b"Readme" {
                bytes[at + 4] = b'M';
            }
        }
        fs::write(&zip, &bytes).unwrap();
        let m = kr_fs();
        let e = format!("{:#}", store.insert(&m, &go_mod, Some(&zip)).unwrap_err());
        assert!(e.contains("github.com/kr/fs v0.1.0"), "{e}");
        assert!(
            e.contains("h1:Jskdu9ieNAYnjxsi0LbQp1ulIKZV1LAFgK1tWhpZgl8="),
            "{e}"
        );
        assert!(e.contains("cargo xtask lock --update"), "{e}");
        assert!(!store.has_verified(&m));
    }

    #[test]
    fn a_damaged_store_entry_is_refused() {
        let (_dir, store, zip, go_mod) = setup();
        let m = kr_fs();
        store.insert(&m, &go_mod, Some(&zip)).unwrap();
        let (mod_path, _) = store.verified(&m).unwrap();
        fs::write(&mod_path, "module evil\n").unwrap();
        let e = store.verified(&m).unwrap_err().to_string();
        assert!(
            e.contains("stored go.mod") && e.contains("cargo xtask fetch"),
            "{e}"
        );
    }

    #[test]
    fn download_output_parses() {
        let out = br#"{
	"Path": "tailscale.com",
	"Version": "v9.9.9",
	"Error": "tailscale.com@v9.9.9: invalid version: unknown revision v9.9.9"
}
{
	"Path": "github.com/kr/fs",
	"Version": "v0.1.0",
	"GoMod": "/m/cache/download/github.com/kr/fs/@v/v0.1.0.mod",
	"Zip": "/m/cache/download/github.com/kr/fs/@v/v0.1.0.zip",
	"Sum": "h1:Jskdu9ieNAYnjxsi0LbQp1ulIKZV1LAFgK1tWhpZgl8=",
	"GoModSum": "h1:FFnZGqtBN9Gxj7eW1uZ42v5BccTP0vu6NEaFoC2HwRg="
}
"#;
        let d = parse_downloads(out).unwrap();
        assert_eq!(d.len(), 2);
        assert!(d[0].error.as_deref().unwrap().contains("unknown revision"));
        assert_eq!(
            d[1].sum.as_deref(),
            Some("h1:Jskdu9ieNAYnjxsi0LbQp1ulIKZV1LAFgK1tWhpZgl8=")
        );
    }
}
