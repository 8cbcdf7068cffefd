//! `lock` for a source build of Tailscale: which Go modules, at which
//! `h1:`, build `tailscale.com/cmd/tailscale` and `cmd/tailscaled`.
//!
//! Go itself resolves: `go mod download -json tailscale.com@<v>` (checked
//! against the checksum database, as the host's `go` is configured), then,
//! in the unpacked module with a fresh module cache, `go list -deps` of the
//! two commands with `-mod=readonly` (so Go checks every download against
//! tailscale.com's own go.sum). What landed in that cache is exactly what an
//! offline build needs: every `.mod` (module graph) and every `.zip`
//! (packages). Each is hashed here with [`super::dirhash`] and must equal
//! its go.sum line.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};
use image_spec::lock::GoModule;

use super::dirhash::{hash_go_mod, hash_zip};
use super::toolchain::Go;
use super::unescape_path;
use super::zip::Zip;

/// The packages of the image's two binaries.
pub const COMMANDS: [&str; 2] = ["./cmd/tailscale", "./cmd/tailscaled"];

/// What a resolution found: the toolchain and every module, sorted.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// `go env GOVERSION`.
    pub go: String,
    /// The main module first resolved, then its build closure (sorted).
    pub modules: Vec<GoModule>,
}

/// Unpacks the module zip at `zip` (entries `<module>@<version>/…`) into `dest`.
pub fn unpack_module(zip: &Path, prefix: &str, dest: &Path) -> Result<()> {
    let file = fs::File::open(zip).with_context(|| format!("opening {}", zip.display()))?;
    let mut z = Zip::new(std::io::BufReader::new(file))
        .with_context(|| format!("reading {}", zip.display()))?;
    for e in z.entries().to_vec() {
        let Some(rel) = e.name.strip_prefix(prefix) else {
            bail!("{}: entry {} is outside {prefix}", zip.display(), e.name);
        };
        if rel.is_empty() || rel.ends_with('/') {
            continue;
        }
        if rel
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
        {
            bail!("{}: unsafe entry name {}", zip.display(), e.name);
        }
        let path = dest.join(rel);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let data = z
            .read(&e)
            .with_context(|| format!("reading {}", zip.display()))?;
        fs::write(&path, data).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Resolves `module@version`'s build closure for [`COMMANDS`] (linux/amd64,
/// no cgo) in the scratch directory `work`.
pub fn resolve(go: &Go, module: &str, version: &str, work: &Path) -> Result<Resolved> {
    eprintln!("lock: Go module {module}@{version} ({})", go.version);
    let args: Vec<String> = vec![
        "mod".into(),
        "download".into(),
        "-json".into(),
        format!("{module}@{version}"),
    ];
    // The main module is checked against the checksum database (the host's
    // GOSUMDB); its dependencies below against its own go.sum.
    let main = super::store::download(go, work, &args, true)?
        .into_iter()
        .next()
        .with_context(|| format!("`go mod download {module}@{version}` printed nothing"))?;
    if let Some(e) = &main.error {
        bail!(
            "Tailscale {}: the module proxy does not serve {module}@{version}: {e}\n  \
             fix: set [tailscale] version to a released version (`go list -m -versions {module}` lists them)",
            version.trim_start_matches('v')
        );
    }
    let (Some(zip), Some(sum), Some(mod_sum)) = (&main.zip, &main.sum, &main.go_mod_sum) else {
        bail!("`go mod download -json {module}@{version}` gave no zip or hashes");
    };
    let zip_h1 = hash_zip(std::io::BufReader::new(
        fs::File::open(zip).with_context(|| format!("opening {zip}"))?,
    ))?;
    if &zip_h1 != sum {
        bail!("{module}@{version}: our h1 {zip_h1} differs from Go's {sum} (a dirhash bug?)");
    }
    let src = work.join("src");
    unpack_module(Path::new(zip), &format!("{module}@{version}/"), &src)?;

    eprintln!("lock: resolving the modules of {}", COMMANDS.join(" "));
    let cache = work.join("deps");
    let mut list_args = vec!["list", "-deps", "-f", "{{.ImportPath}}"];
    list_args.extend(COMMANDS);
    let listed = duct::cmd(&go.bin, &list_args)
        .dir(&src)
        .env("GOMODCACHE", &cache)
        .env("GOFLAGS", "-mod=readonly -modcacherw")
        .env("GOTOOLCHAIN", "local")
        .env("GOWORK", "off")
        .env("GOOS", "linux")
        .env("GOARCH", "amd64")
        .env("CGO_ENABLED", "0")
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .context("running `go list -deps`")?;
    if !listed.status.success() {
        bail!(
            "`go list -deps {}` in {module}@{version} failed ({}): {}",
            COMMANDS.join(" "),
            listed.status,
            String::from_utf8_lossy(&listed.stderr).trim()
        );
    }
    let go_sum = fs::read_to_string(src.join("go.sum"))
        .with_context(|| format!("reading the go.sum of {module}@{version}"))?;
    let mut modules = cached_modules(&cache.join("cache/download"))?;
    check_against_go_sum(&modules, &go_sum, module)?;
    if mod_sum != &hash_go_mod(&fs::read(main.go_mod.as_deref().unwrap_or_default())?) {
        bail!("{module}@{version}: its go.mod does not hash to Go's {mod_sum}");
    }
    modules.retain(|m| m.path != module);
    modules.push(GoModule {
        path: module.into(),
        version: version.into(),
        zip: Some(zip_h1),
        go_mod: mod_sum.clone(),
    });
    modules.sort();
    Ok(Resolved {
        go: go.version.clone(),
        modules,
    })
}

/// Every module in a module cache's `cache/download` tree, hashed.
pub fn cached_modules(download: &Path) -> Result<Vec<GoModule>> {
    let mut out = Vec::new();
    walk(download, download, &mut out)?;
    out.sort();
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<GoModule>) -> Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        if e.file_name() == "@v" {
            let rel = dir
                .strip_prefix(root)
                .unwrap_or(dir)
                .to_string_lossy()
                .into_owned();
            let module = unescape_path(&rel)
                .with_context(|| format!("{}: not an escaped module path", dir.display()))?;
            for f in fs::read_dir(&path).with_context(|| format!("reading {}", path.display()))? {
                let f = f?.path();
                let name = f
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                let Some(version) = name.strip_suffix(".mod") else {
                    continue;
                };
                let go_mod =
                    hash_go_mod(&fs::read(&f).with_context(|| format!("reading {}", f.display()))?);
                let zip_path = path.join(format!("{version}.zip"));
                let zip = if zip_path.is_file() {
                    let file = fs::File::open(&zip_path)
                        .with_context(|| format!("opening {}", zip_path.display()))?;
                    Some(
                        hash_zip(std::io::BufReader::new(file))
                            .with_context(|| format!("hashing {}", zip_path.display()))?,
                    )
                } else {
                    None
                };
                out.push(GoModule {
                    path: module.clone(),
                    version: version.to_string(),
                    zip,
                    go_mod,
                });
            }
        } else if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk(root, &path, out)?;
        }
    }
    Ok(())
}

/// Every module's hashes must be the main module's go.sum lines.
pub fn check_against_go_sum(modules: &[GoModule], go_sum: &str, main: &str) -> Result<()> {
    let sums: BTreeMap<(&str, &str), &str> = go_sum
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some(((f.next()?, f.next()?), f.next()?))
        })
        .collect();
    let mut bad = Vec::new();
    for m in modules {
        let mod_key = format!("{}/go.mod", m.version);
        let lines = [
            (Some(m.go_mod.as_str()), mod_key.as_str()),
            (m.zip.as_deref(), m.version.as_str()),
        ];
        for (ours, key) in lines {
            let Some(ours) = ours else { continue };
            match sums.get(&(m.path.as_str(), key)) {
                Some(theirs) if *theirs == ours => {}
                Some(theirs) => bad.push(format!(
                    "{} {key}: downloaded {ours}, {main}'s go.sum says {theirs}",
                    m.path
                )),
                None => bad.push(format!("{} {key}: not in {main}'s go.sum", m.path)),
            }
        }
    }
    if !bad.is_empty() {
        bail!(
            "the downloaded modules do not match {main}'s go.sum:\n  {}",
            bad.join("\n  ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gomod::fixture::{MOD, ZIP, kr_fs};

    const GO_SUM: &str = "github.com/kr/fs v0.1.0 h1:Jskdu9ieNAYnjxsi0LbQp1ulIKZV1LAFgK1tWhpZgl8=\n\
                          github.com/kr/fs v0.1.0/go.mod h1:FFnZGqtBN9Gxj7eW1uZ42v5BccTP0vu6NEaFoC2HwRg=\n";

    #[test]
    fn a_module_cache_is_read_and_checked_against_go_sum() {
        let dir = tempfile::tempdir().unwrap();
        let v = dir.path().join("github.com/kr/fs/@v");
        fs::create_dir_all(&v).unwrap();
        fs::write(v.join("v0.1.0.zip"), ZIP).unwrap();
        fs::write(v.join("v0.1.0.mod"), MOD).unwrap();
        fs::write(v.join("v0.1.0.info"), "{}").unwrap();
        let found = cached_modules(dir.path()).unwrap();
        assert_eq!(found, vec![kr_fs()]);
        check_against_go_sum(&found, GO_SUM, "tailscale.com").unwrap();
        let other = GO_SUM.replace("h1:Jsk", "h1:XXX");
        let e = check_against_go_sum(&found, &other, "tailscale.com")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("github.com/kr/fs v0.1.0: downloaded h1:Jsk"),
            "{e}"
        );
    }

    #[test]
    fn unpacking_strips_the_module_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let zip = dir.path().join("m.zip");
        fs::write(&zip, ZIP).unwrap();
        unpack_module(&zip, "github.com/kr/fs@v0.1.0/", &dir.path().join("src")).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("src/go.mod")).unwrap(),
            "module \"github.com/kr/fs\"\n"
        );
    }
}
