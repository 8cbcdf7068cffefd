//! Firmware: SeaBIOS (QEMU's default) or OVMF (UEFI) from the host's `ovmf`
//! package.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The firmware a machine boots with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Firmware {
    /// Legacy BIOS (SeaBIOS, QEMU's built-in default).
    #[default]
    Bios,
    /// UEFI (OVMF): read-only code flash plus a per-machine copy of the
    /// variable store.
    Uefi,
}

impl std::fmt::Display for Firmware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Firmware::Bios => "bios",
            Firmware::Uefi => "uefi",
        })
    }
}

/// The two OVMF files: the code (mapped read-only) and the template of the
/// variable store (copied once per machine, then writable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OvmfFiles {
    /// `OVMF_CODE*.fd`.
    pub code: PathBuf,
    /// `OVMF_VARS*.fd`, never written: each machine gets a copy.
    pub vars_template: PathBuf,
}

/// Environment variables naming the OVMF files explicitly (both or neither).
pub const OVMF_CODE_ENV: &str = "VMTEST_OVMF_CODE";
/// See [`OVMF_CODE_ENV`].
pub const OVMF_VARS_ENV: &str = "VMTEST_OVMF_VARS";

/// Known places of a (code, vars) pair without Secure Boot, most preferred
/// first: Debian/Ubuntu `ovmf` (4 MiB, then the older 2 MiB build), Fedora,
/// Arch, and QEMU's own install.
pub const OVMF_CANDIDATES: &[(&str, &str)] = &[
    (
        "/usr/share/OVMF/OVMF_CODE_4M.fd",
        "/usr/share/OVMF/OVMF_VARS_4M.fd",
    ),
    (
        "/usr/share/OVMF/OVMF_CODE.fd",
        "/usr/share/OVMF/OVMF_VARS.fd",
    ),
    (
        "/usr/share/edk2/ovmf/OVMF_CODE.fd",
        "/usr/share/edk2/ovmf/OVMF_VARS.fd",
    ),
    (
        "/usr/share/edk2/x64/OVMF_CODE.4m.fd",
        "/usr/share/edk2/x64/OVMF_VARS.4m.fd",
    ),
    (
        "/usr/share/qemu/edk2-x86_64-code.fd",
        "/usr/share/qemu/edk2-i386-vars.fd",
    ),
];

/// Finds OVMF: `VMTEST_OVMF_CODE`/`VMTEST_OVMF_VARS` if set, else the first
/// complete pair of [`OVMF_CANDIDATES`]. The error says which package to
/// install.
pub fn find_ovmf() -> Result<OvmfFiles> {
    match (
        std::env::var_os(OVMF_CODE_ENV),
        std::env::var_os(OVMF_VARS_ENV),
    ) {
        (Some(code), Some(vars)) => {
            let files = OvmfFiles {
                code: code.into(),
                vars_template: vars.into(),
            };
            for p in [&files.code, &files.vars_template] {
                if !p.is_file() {
                    bail!(
                        "OVMF file {} (from ${OVMF_CODE_ENV}/${OVMF_VARS_ENV}) does not exist",
                        p.display()
                    );
                }
            }
            return Ok(files);
        }
        (None, None) => {}
        _ => bail!("set both {OVMF_CODE_ENV} and {OVMF_VARS_ENV}, or neither"),
    }
    find_ovmf_in(
        OVMF_CANDIDATES
            .iter()
            .map(|(c, v)| (Path::new(c), Path::new(v))),
    )
}

/// [`find_ovmf`] over an explicit candidate list (for tests).
pub fn find_ovmf_in<'a>(
    candidates: impl IntoIterator<Item = (&'a Path, &'a Path)>,
) -> Result<OvmfFiles> {
    let mut looked = Vec::new();
    for (code, vars) in candidates {
        if code.is_file() && vars.is_file() {
            return Ok(OvmfFiles {
                code: code.to_path_buf(),
                vars_template: vars.to_path_buf(),
            });
        }
        looked.push(code.display().to_string());
    }
    bail!(
        "no OVMF (UEFI firmware) found, looked for {}: install the `ovmf` package \
         (`apt-get install ovmf`, or run `cargo xtask doctor`), or set {OVMF_CODE_ENV} and {OVMF_VARS_ENV}",
        looked.join(", ")
    )
}

/// Copies the variable store template to `dest` (once per machine), unless
/// `dest` already exists (a machine keeps its NVRAM across boots).
pub fn prepare_vars(files: &OvmfFiles, dest: &Path) -> Result<()> {
    if dest.exists() {
        return Ok(());
    }
    std::fs::copy(&files.vars_template, dest).with_context(|| {
        format!(
            "copying OVMF variables {} to {}",
            files.vars_template.display(),
            dest.display()
        )
    })?;
    // The template is read-only in the package; the copy must be writable.
    let mut perms = std::fs::metadata(dest)
        .with_context(|| format!("reading {}", dest.display()))?
        .permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(dest, perms)
        .with_context(|| format!("making {} writable", dest.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_complete_pair_wins_and_missing_names_the_package() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        std::fs::write(p("code-a"), b"").unwrap();
        std::fs::write(p("code-b"), b"").unwrap();
        std::fs::write(p("vars-b"), b"").unwrap();
        let (ca, va, cb, vb) = (p("code-a"), p("vars-a"), p("code-b"), p("vars-b"));
        let found =
            find_ovmf_in([(ca.as_path(), va.as_path()), (cb.as_path(), vb.as_path())]).unwrap();
        assert_eq!(found.code, cb);
        assert_eq!(found.vars_template, vb);

        let err = find_ovmf_in([(ca.as_path(), va.as_path())])
            .unwrap_err()
            .to_string();
        assert!(err.contains("install the `ovmf` package"), "{err}");
        assert!(err.contains("code-a"), "{err}");
    }

    #[test]
    fn vars_copy_is_writable_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let template = dir.path().join("VARS.fd");
        std::fs::write(&template, b"template").unwrap();
        let mut perms = std::fs::metadata(&template).unwrap().permissions();
        perms.set_readonly(true);
        std::fs::set_permissions(&template, perms).unwrap();
        let files = OvmfFiles {
            code: dir.path().join("CODE.fd"),
            vars_template: template,
        };
        let dest = dir.path().join("machine-VARS.fd");
        prepare_vars(&files, &dest).unwrap();
        assert!(!std::fs::metadata(&dest).unwrap().permissions().readonly());
        std::fs::write(&dest, b"nvram written by the guest").unwrap();
        prepare_vars(&files, &dest).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"nvram written by the guest");
    }
}
