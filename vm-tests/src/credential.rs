//! systemd credentials handed to the guest through QEMU's SMBIOS type 11 table.
//!
//! systemd (PID 1, in a VM) imports every SMBIOS type 11 string of the form
//! `io.systemd.credential.binary:<name>=<base64>` as the system credential
//! `<name>` (see systemd.system-credentials(7)). The harness uses this to add
//! its command channel from outside the image; tests use it to pass secrets.
//! The strings go to QEMU in files (`-smbios type=11,path=FILE`, mode 0600 in
//! the machine's private directory), never on its command line, which any
//! user of the host can read.

use anyhow::{Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;

/// One systemd credential: a name and its (binary) value.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    name: String,
    value: Vec<u8>,
}

impl std::fmt::Debug for Credential {
    /// Shows the name and the size only: a credential's value may be a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("name", &self.name)
            .field("len", &self.value.len())
            .finish()
    }
}

impl Credential {
    /// A credential called `name` holding `value`.
    ///
    /// The name must be a valid file name (systemd stores each credential as a
    /// file): not empty, at most 255 bytes, no `/`, no NUL, not `.` or `..`;
    /// `=` is refused too because it ends the name in the SMBIOS string.
    pub fn new(name: impl Into<String>, value: impl Into<Vec<u8>>) -> Result<Self> {
        let name = name.into();
        if name.is_empty() || name.len() > 255 || name == "." || name == ".." {
            bail!("invalid credential name {name:?}: must be a file name of 1 to 255 bytes");
        }
        if let Some(c) = name.chars().find(|c| matches!(c, '/' | '\0' | '=')) {
            bail!("invalid credential name {name:?}: contains {c:?}");
        }
        Ok(Credential {
            name,
            value: value.into(),
        })
    }

    /// The credential's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The credential's value.
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// The SMBIOS type 11 string that carries this credential:
    /// `io.systemd.credential.binary:<name>=<base64>`.
    pub fn smbios_string(&self) -> String {
        format!(
            "io.systemd.credential.binary:{}={}",
            self.name,
            STANDARD.encode(&self.value)
        )
    }

    /// Writes [`Self::smbios_string`] to a new file at `path`, mode 0600,
    /// for QEMU's `-smbios type=11,path=`.
    pub fn write_smbios_file(&self, path: &Path) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        f.write_all(self.smbios_string().as_bytes())
            .with_context(|| format!("writing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, value: &[u8], expected: &str) {
        let cred = Credential::new(name, value).unwrap();
        assert_eq!(cred.smbios_string(), expected);
    }

    #[test]
    fn smbios_encoding() {
        check(
            "systemd.extra-unit.foo.service",
            b"[Unit]\n",
            "io.systemd.credential.binary:systemd.extra-unit.foo.service=W1VuaXRdCg==",
        );
        check("empty", b"", "io.systemd.credential.binary:empty=");
        check(
            "bin",
            &[0, 0xff, b','],
            "io.systemd.credential.binary:bin=AP8s",
        );
        // A file is not parsed as QEMU options: a comma stays single.
        check("a,b", b"x", "io.systemd.credential.binary:a,b=eA==");
    }

    #[test]
    fn the_file_is_private_and_holds_the_string() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cred");
        let cred = Credential::new("token", b"s3cret".to_vec()).unwrap();
        cred.write_smbios_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            cred.smbios_string()
        );
        // Never over an existing file.
        assert!(cred.write_smbios_file(&path).is_err());
    }

    #[test]
    fn invalid_names() {
        for name in ["", ".", "..", "a/b", "a=b", "nul\0"] {
            assert!(Credential::new(name, b"x".to_vec()).is_err(), "{name:?}");
        }
        assert!(Credential::new("x".repeat(256), b"x".to_vec()).is_err());
    }

    #[test]
    fn debug_hides_the_value() {
        let cred = Credential::new("token", b"s3cret".to_vec()).unwrap();
        let shown = format!("{cred:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("token"));
    }
}
