//! Tailscale from the official static tarball in the store
//! (`tailscale_<version>_amd64.tgz`, pinned by sha256 in the lock).
//!
//! The tarball holds `tailscale_<v>_amd64/{tailscale, tailscaled}` and
//! `systemd/{tailscaled.service, tailscaled.defaults}`.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};
use appliance::Tree;

use super::Files;

/// The tarball's entries, in [`Files`]' order.
const WANTED: [&str; 4] = [
    "tailscale",
    "tailscaled",
    "systemd/tailscaled.service",
    "systemd/tailscaled.defaults",
];

/// The appliance layer's Tailscale part, read from `tgz`.
pub fn tree(tgz: &Path, version: &str) -> Result<Tree> {
    Ok(super::tree(files(tgz, version)?))
}

/// The four files the image needs, read from `tgz`.
pub fn files(tgz: &Path, version: &str) -> Result<Files> {
    let file = std::fs::File::open(tgz).with_context(|| format!("opening {}", tgz.display()))?;
    let prefix = format!("tailscale_{version}_amd64/");
    let mut found: Vec<Option<Vec<u8>>> = vec![None; WANTED.len()];
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in archive
        .entries()
        .with_context(|| format!("reading {}", tgz.display()))?
    {
        let mut entry = entry.with_context(|| format!("reading {}", tgz.display()))?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let Some(rel) = path.strip_prefix(&prefix) else {
            continue;
        };
        if let Some(i) = WANTED.iter().position(|name| *name == rel) {
            let mut data = Vec::new();
            entry
                .read_to_end(&mut data)
                .with_context(|| format!("reading {path} from {}", tgz.display()))?;
            found[i] = Some(data);
        }
    }
    let mut out = Vec::with_capacity(WANTED.len());
    for (name, data) in WANTED.iter().zip(found) {
        let Some(data) = data else {
            bail!(
                "{} has no {prefix}{name}: is it the official static tarball of Tailscale {version} for amd64?",
                tgz.display()
            );
        };
        out.push(data);
    }
    let [tailscale, tailscaled, service, defaults]: [Vec<u8>; 4] = out
        .try_into()
        .map_err(|_| anyhow::anyhow!("internal error: not four files"))?;
    Ok(Files {
        tailscale,
        tailscaled,
        service,
        defaults,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use appliance::tree::Entry;

    fn tgz(dir: &Path, version: &str, skip: Option<&str>) -> std::path::PathBuf {
        let path = dir.join(format!("tailscale_{version}_amd64.tgz"));
        let gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        let mut b = tar::Builder::new(gz);
        for name in [
            "tailscale",
            "tailscaled",
            "systemd/tailscaled.service",
            "systemd/tailscaled.defaults",
            "README",
        ] {
            if Some(name) == skip {
                continue;
            }
            let data = format!("contents of {name}");
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o755);
            h.set_cksum();
            b.append_data(
                &mut h,
                format!("tailscale_{version}_amd64/{name}"),
                data.as_bytes(),
            )
            .unwrap();
        }
        b.into_inner().unwrap().finish().unwrap();
        path
    }

    #[test]
    fn places_binaries_unit_and_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let t = tree(&tgz(dir.path(), "1.2.3", None), "1.2.3").unwrap();
        let file = |p: &str| match t.get(p) {
            Some(Entry::File { mode, data, .. }) => {
                (*mode, String::from_utf8_lossy(data).into_owned())
            }
            other => panic!("{p}: {other:?}"),
        };
        assert_eq!(
            file("usr/sbin/tailscaled"),
            (0o755, "contents of tailscaled".into())
        );
        assert_eq!(
            file("usr/bin/tailscale"),
            (0o755, "contents of tailscale".into())
        );
        assert_eq!(file("usr/lib/systemd/system/tailscaled.service").0, 0o644);
        assert_eq!(file("etc/default/tailscaled").0, 0o644);
        assert!(matches!(
            t.get("var/lib/tailscale"),
            Some(Entry::Dir {
                mode: 0o700,
                uid: 0,
                gid: 0
            })
        ));
        assert!(matches!(
            t.get("etc/systemd/system/multi-user.target.wants/tailscaled.service"),
            Some(Entry::Symlink { target }) if target == "/usr/lib/systemd/system/tailscaled.service"
        ));
        assert!(t.get("README").is_none());
    }

    #[test]
    fn a_missing_file_names_the_tarball_and_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = tgz(dir.path(), "1.2.3", Some("tailscaled"));
        let e = tree(&path, "1.2.3").unwrap_err().to_string();
        assert!(e.contains("tailscale_1.2.3_amd64/tailscaled"), "{e}");
        assert!(e.contains(&path.display().to_string()), "{e}");
        // The wrong version's prefix finds nothing.
        assert!(tree(&tgz(dir.path(), "1.2.3", None), "9.9.9").is_err());
    }
}
