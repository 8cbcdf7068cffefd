//! Which stage of two builds diverged first: each stage's output in the two
//! stage directories (found by the stage keys of the builds' manifests) is
//! compared in pipeline order — the tools tree, base rootfs tarball,
//! sandbox image archive (and inside it the layer), app tree, first-boot
//! agent, inner manifest and merged root tarball — entry by entry.

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

use super::listing::{Change, Entry, diff_listings, tar_listing, tree_listing, without_mtimes};
use hostutil::sha256_file;

/// One build's outputs.
#[derive(Debug, Clone)]
pub struct BuildDir {
    /// Short name for messages (`A`, `B`).
    pub label: String,
    /// Its stage cache directory.
    pub stage_dir: PathBuf,
    /// Its raw image.
    pub image: PathBuf,
    /// Its `<name>.manifest.json`.
    pub manifest: PathBuf,
}

/// How one stage compares.
#[derive(Debug, Clone)]
pub struct StageResult {
    /// Stage name (`tools`, `base`, `sandbox`, `app`, `agent`, `manifest`, `root`).
    pub name: String,
    /// Whether the stage's output goes into the image (the tools tree does not).
    pub in_image: bool,
    /// Whether both builds produced the same output.
    pub same: bool,
    /// What differs (empty when the same).
    pub details: Vec<String>,
}

/// The stage keys of a manifest, by stage name.
pub fn stage_keys(manifest: &Value) -> Vec<(String, String)> {
    manifest
        .get("stages")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| {
                    Some((
                        s.get("name")?.as_str()?.to_string(),
                        s.get("key")?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Reads a manifest file.
pub fn read_manifest(path: &Path) -> Result<Value> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

/// Compares the stages of builds `a` and `b`, in pipeline order. `scratch`
/// holds temporary copies of nested archives; at most `limit` differences
/// are listed per stage.
pub fn compare_stages(
    a: &BuildDir,
    b: &BuildDir,
    scratch: &Path,
    limit: usize,
) -> Result<Vec<StageResult>> {
    let ma = read_manifest(&a.manifest)?;
    let mb = read_manifest(&b.manifest)?;
    let ka = stage_keys(&ma);
    let kb = stage_keys(&mb);
    let key = |keys: &[(String, String)], n: &str| {
        keys.iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for name in ["tools", "base", "sandbox", "sandbox-store", "app", "agent"] {
        let (x, y) = (key(&ka, name), key(&kb, name));
        let mut r = StageResult {
            name: name.into(),
            in_image: name != "tools",
            same: true,
            details: Vec::new(),
        };
        if x != y {
            r.same = false;
            r.details.push(if name == "agent" {
                format!("first-boot agent binary sha256 {x} → {y}")
            } else {
                format!("stage key {x} → {y}: the stage's inputs or recipe differ")
            });
            out.push(r);
            continue;
        }
        let (sa, sb) = (&a.stage_dir, &b.stage_dir);
        let outcome = match name {
            // The tools tree reaches the image only through what its tools
            // do: contents, modes and links matter, extraction mtimes not.
            "tools" => compare_trees(
                &sa.join(format!("tools-{x}")),
                &sb.join(format!("tools-{x}")),
                limit,
                true,
            ),
            "base" => compare_tars(
                &sa.join(format!("base-{x}.tar")),
                &sb.join(format!("base-{x}.tar")),
                scratch,
                limit,
            ),
            "sandbox" => {
                let id = |d: &Path| {
                    fs::read_to_string(d.join(format!("sandbox-{x}.id"))).unwrap_or_default()
                };
                let (ia, ib) = (id(sa), id(sb));
                let mut d = compare_tars(
                    &sa.join(format!("sandbox-{x}.image.tar")),
                    &sb.join(format!("sandbox-{x}.image.tar")),
                    scratch,
                    limit,
                );
                if ia.trim() != ib.trim()
                    && let Ok(lines) = &mut d
                {
                    lines.insert(0, format!("image ID {} → {}", ia.trim(), ib.trim()));
                }
                d
            }
            // Docker's image store made from the archive (what the image holds).
            "sandbox-store" => compare_tars(
                &sa.join(format!("sandbox-store-{x}.tar")),
                &sb.join(format!("sandbox-store-{x}.tar")),
                scratch,
                limit,
            ),
            "app" => compare_trees(
                &sa.join(format!("app-{x}")),
                &sb.join(format!("app-{x}")),
                limit,
                false,
            ),
            // The key is the binary's sha256: equal keys, equal binaries.
            _ => Ok(Vec::new()),
        };
        match outcome {
            Ok(d) => {
                r.same = d.is_empty();
                r.details = d;
            }
            Err(e) => {
                r.same = false;
                r.details.push(format!("could not compare: {e:#}"));
            }
        }
        out.push(r);
    }
    let inner = |d: &Path| d.join("manifest.inner.json");
    let manifest = match (
        fs::read_to_string(inner(&a.stage_dir)),
        fs::read_to_string(inner(&b.stage_dir)),
    ) {
        (Ok(x), Ok(y)) if x == y => Vec::new(),
        (Ok(x), Ok(y)) => {
            let (lx, ly): (Vec<String>, Vec<String>) = (
                x.lines().map(String::from).collect(),
                y.lines().map(String::from).collect(),
            );
            let mut d = super::ext4::line_diff(&lx, &ly);
            d.truncate(2 * limit);
            d
        }
        (x, y) => vec![format!(
            "cannot read both inner manifests: {} / {}",
            x.err()
                .map(|e| e.to_string())
                .unwrap_or_else(|| "ok".into()),
            y.err()
                .map(|e| e.to_string())
                .unwrap_or_else(|| "ok".into())
        )],
    };
    out.push(StageResult {
        name: "manifest (inner, /usr/share/openclaw-image/manifest.json)".into(),
        in_image: true,
        same: manifest.is_empty(),
        details: manifest,
    });
    let (ra, rb) = (a.stage_dir.join("root.tar"), b.stage_dir.join("root.tar"));
    if !ra.is_file() || !rb.is_file() {
        // build-image streams the merged root into mke2fs and keeps it only
        // with --keep-root-tar (verify-repro's own builds do): the disk
        // comparison below covers it.
        out.push(StageResult {
            name: "root (merged root tarball): not compared, a build did not keep it (--keep-root-tar); see the disk".into(),
            in_image: true,
            same: true,
            details: Vec::new(),
        });
        return Ok(out);
    }
    let root = compare_tars(&ra, &rb, scratch, limit)
        .unwrap_or_else(|e| vec![format!("could not compare: {e:#}")]);
    out.push(StageResult {
        name: "root (merged root tarball, the input of mke2fs)".into(),
        in_image: true,
        same: root.is_empty(),
        details: root,
    });
    Ok(out)
}

/// Describes `changes`, at most `limit` of them.
pub fn describe(changes: &[Change], limit: usize) -> Vec<String> {
    let mut out: Vec<String> = changes
        .iter()
        .take(limit)
        .map(ToString::to_string)
        .collect();
    if changes.len() > limit {
        out.push(format!("… and {} more", changes.len() - limit));
    }
    out
}

fn compare_trees(a: &Path, b: &Path, limit: usize, ignore_mtimes: bool) -> Result<Vec<String>> {
    let mut changes = diff_listings(&tree_listing(a)?, &tree_listing(b)?);
    if ignore_mtimes {
        changes = without_mtimes(changes);
    }
    Ok(describe(&changes, limit))
}

/// Compares two tarballs: same bytes, else entry by entry; entries that are
/// themselves tarballs (the sandbox image's layer) are compared inside.
pub fn compare_tars(a: &Path, b: &Path, scratch: &Path, limit: usize) -> Result<Vec<String>> {
    if sha256_file(a)? == sha256_file(b)? {
        return Ok(Vec::new());
    }
    let la = tar_listing(a)?;
    let lb = tar_listing(b)?;
    let changes = diff_listings(&la, &lb);
    let mut out = describe(&changes, limit);
    if changes.is_empty() {
        out.push(
            "the tarballs' bytes differ but no entry does (header encoding or padding)".into(),
        );
    }
    if let Some((pa, pb)) = nested_pair(&changes, &la, &lb) {
        fs::create_dir_all(scratch).with_context(|| format!("creating {}", scratch.display()))?;
        let xa = scratch.join("nested-a.tar");
        let xb = scratch.join("nested-b.tar");
        extract_entry(a, &pa, &xa)?;
        extract_entry(b, &pb, &xb)?;
        if is_tar(&xa)? && is_tar(&xb)? {
            out.push(format!("inside {pa} (A) vs {pb} (B):"));
            let inner = diff_listings(&tar_listing(&xa)?, &tar_listing(&xb)?);
            out.extend(
                describe(&inner, limit)
                    .into_iter()
                    .map(|l| format!("  {l}")),
            );
        }
        let _ = fs::remove_file(&xa);
        let _ = fs::remove_file(&xb);
    }
    Ok(out)
}

/// The pair of differing entries worth opening: the same path with other
/// contents, else the largest entry only in A and the largest only in B
/// (a content-addressed blob renamed by its new digest).
fn nested_pair(changes: &[Change], a: &[Entry], b: &[Entry]) -> Option<(String, String)> {
    let size = |l: &[Entry], p: &str| l.iter().find(|e| e.path == p).map(|e| e.size).unwrap_or(0);
    let same_path = changes
        .iter()
        .filter_map(|c| match c {
            Change::Differs { path, fields }
                if fields.iter().any(|f| f.name == "content sha256") =>
            {
                Some(path.clone())
            }
            _ => None,
        })
        .max_by_key(|p| size(a, p));
    if let Some(p) = same_path
        && size(a, &p) > 10 * 1024
    {
        return Some((p.clone(), p));
    }
    let largest = |want_a: bool, l: &[Entry]| {
        changes
            .iter()
            .filter_map(|c| match (c, want_a) {
                (Change::OnlyInA(p), true) | (Change::OnlyInB(p), false) => Some(p.clone()),
                _ => None,
            })
            .max_by_key(|p| size(l, p))
    };
    let pa = largest(true, a)?;
    let pb = largest(false, b)?;
    (size(a, &pa) > 10 * 1024 && size(b, &pb) > 10 * 1024).then_some((pa, pb))
}

fn extract_entry(archive: &Path, path: &str, dest: &Path) -> Result<()> {
    let f = File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
    let mut ar = tar::Archive::new(BufReader::with_capacity(1 << 20, f));
    for e in ar
        .entries()
        .with_context(|| format!("reading {}", archive.display()))?
    {
        let mut e = e.with_context(|| format!("reading {}", archive.display()))?;
        if super::listing::clean_path(&e.path()?.to_string_lossy()) == path {
            let mut out =
                File::create(dest).with_context(|| format!("creating {}", dest.display()))?;
            io::copy(&mut e, &mut out).with_context(|| format!("writing {}", dest.display()))?;
            return Ok(());
        }
    }
    anyhow::bail!("{path} is not in {}", archive.display())
}

fn is_tar(p: &Path) -> Result<bool> {
    let mut head = [0u8; 512];
    let mut f = File::open(p).with_context(|| format!("opening {}", p.display()))?;
    if f.read_exact(&mut head).is_err() {
        return Ok(false);
    }
    Ok(&head[257..262] == b"ustar")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (p, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_mtime(1);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, p, data.as_slice()).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn a_renamed_layer_is_opened() {
        let pad = vec![b'x'; 20 * 1024];
        let layer_a = tar_with(&[("etc/hostname", b"a\n".to_vec()), ("big", pad.clone())]);
        let layer_b = tar_with(&[("etc/hostname", b"b\n".to_vec()), ("big", pad)]);
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.tar");
        let b = dir.path().join("b.tar");
        fs::write(
            &a,
            tar_with(&[
                ("index.json", b"{}".to_vec()),
                ("blobs/sha256/aaa", layer_a),
            ]),
        )
        .unwrap();
        fs::write(
            &b,
            tar_with(&[
                ("index.json", b"{}".to_vec()),
                ("blobs/sha256/bbb", layer_b),
            ]),
        )
        .unwrap();
        let got = compare_tars(&a, &b, &dir.path().join("scratch"), 10).unwrap();
        assert_eq!(
            got,
            [
                "blobs/sha256/aaa: only in A",
                "blobs/sha256/bbb: only in B",
                "inside blobs/sha256/aaa (A) vs blobs/sha256/bbb (B):",
                "  etc/hostname: content sha256 87428fc522803d31 → 0263829989b6fd95",
            ]
        );
        assert!(compare_tars(&a, &a, dir.path(), 10).unwrap().is_empty());
    }

    #[test]
    fn stage_keys_from_a_manifest() {
        let m: Value = serde_json::json!({"stages": [{"name": "tools", "key": "k1"}, {"name": "agent", "key": "k2"}]});
        assert_eq!(
            stage_keys(&m),
            [
                ("tools".to_string(), "k1".to_string()),
                ("agent".to_string(), "k2".to_string())
            ]
        );
    }
}
