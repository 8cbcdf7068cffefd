//! Where the host's programs and data files are: programs on `PATH`, data
//! files through documented environment variables with Debian's paths as
//! defaults, so a Nix dev shell or another distribution works
//! (`docs/cli.md`, "Environment").

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The Debian archive keyring (`gpgv` checks `InRelease` with it).
pub const DEBIAN_KEYRING_ENV: &str = "OPENCLAW_DEBIAN_KEYRING";
/// Debian's place of the archive keyring (package `debian-archive-keyring`).
pub const DEBIAN_KEYRING_DEFAULT: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// OVMF's code flash for vm-test's UEFI pass (read by `vm_tests::firmware`).
pub const OVMF_CODE_ENV: &str = "VMTEST_OVMF_CODE";
/// OVMF's variable store template (read by `vm_tests::firmware`).
pub const OVMF_VARS_ENV: &str = "VMTEST_OVMF_VARS";
/// The QEMU binary vm-test runs (read by `vm_tests::qemu`).
pub const QEMU_ENV: &str = "VMTEST_QEMU";

/// Every variable that names a host tool or data file, with what it names;
/// `docs/cli.md` lists the same, and `flake.nix` sets each in its shell.
pub const LOCATION_VARS: &[(&str, &str)] = &[
    (DEBIAN_KEYRING_ENV, "the Debian archive keyring"),
    (OVMF_CODE_ENV, "OVMF's code flash (UEFI firmware)"),
    (OVMF_VARS_ENV, "OVMF's variable store template"),
    (
        QEMU_ENV,
        "the QEMU binary (default: `qemu-system-x86_64` on PATH)",
    ),
];

/// The environment a look-up reads: `PATH` and the location variables.
/// [`HostEnv::current`] is this process's; tests build their own.
#[derive(Debug, Clone, Default)]
pub struct HostEnv {
    path: OsString,
    vars: BTreeMap<String, OsString>,
}

impl HostEnv {
    /// This process's `PATH` and location variables.
    pub fn current() -> HostEnv {
        let vars = LOCATION_VARS
            .iter()
            .filter_map(|(name, _)| Some((name.to_string(), std::env::var_os(name)?)))
            .collect();
        HostEnv {
            path: std::env::var_os("PATH").unwrap_or_default(),
            vars,
        }
    }

    /// An explicit environment: `path` as `PATH`, `vars` as the location
    /// variables (others unset).
    pub fn new(path: OsString, vars: &[(&str, &Path)]) -> HostEnv {
        HostEnv {
            path,
            vars: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_os_str().to_owned()))
                .collect(),
        }
    }

    /// The value of location variable `name`, if set and not empty.
    pub fn var(&self, name: &str) -> Option<&Path> {
        self.vars
            .get(name)
            .filter(|v| !v.is_empty())
            .map(|v| Path::new(v.as_os_str()))
    }

    /// The first of `names` in a directory of `PATH`, else in `also`
    /// (Debian directories outside a user's `PATH`, such as `/usr/sbin`).
    pub fn program(&self, names: &[&str], also: &[&str]) -> Option<PathBuf> {
        hostutil::find_program(&self.path, names, also)
    }

    /// The file named by variable `var` if it is set (whether or not it
    /// exists: an explicit setting is never silently ignored), else the
    /// first existing of `defaults`.
    pub fn file(&self, var: &str, defaults: &[&str]) -> Option<PathBuf> {
        match self.var(var) {
            Some(p) => Some(p.to_path_buf()).filter(|p| p.is_file()),
            None => defaults.iter().map(PathBuf::from).find(|p| p.is_file()),
        }
    }
}

/// The Debian archive keyring: `$OPENCLAW_DEBIAN_KEYRING`, else Debian's
/// path (which may not exist: the caller says how to fix that).
pub fn debian_keyring() -> PathBuf {
    HostEnv::current()
        .var(DEBIAN_KEYRING_ENV)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(DEBIAN_KEYRING_DEFAULT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn its_path_is_searched_and_a_set_variable_wins() {
        // The search order itself is `hostutil::find_program`'s test.
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("tool");
        std::fs::write(&tool, "").unwrap();
        let env = HostEnv::new(std::env::join_paths([dir.path()]).unwrap(), &[]);
        assert_eq!(env.program(&["none", "tool"], &[]), Some(tool.clone()));
        assert_eq!(
            HostEnv::new(OsString::new(), &[]).program(&["tool"], &[]),
            None
        );

        let keyring = dir.path().join("keyring.gpg");
        std::fs::write(&keyring, "").unwrap();
        let env = HostEnv::new(OsString::new(), &[(DEBIAN_KEYRING_ENV, &keyring)]);
        assert_eq!(
            env.file(DEBIAN_KEYRING_ENV, &["/nonexistent"]),
            Some(keyring)
        );
        let unset = dir.path().join("not-there.gpg");
        let env = HostEnv::new(OsString::new(), &[(DEBIAN_KEYRING_ENV, &unset)]);
        // Set but missing: not found, even where the default exists.
        let default = tool.to_str().unwrap();
        assert_eq!(env.file(DEBIAN_KEYRING_ENV, &[default]), None);
        let env = HostEnv::new(OsString::new(), &[]);
        assert_eq!(env.file(DEBIAN_KEYRING_ENV, &[default]), Some(tool.clone()));
    }
}
