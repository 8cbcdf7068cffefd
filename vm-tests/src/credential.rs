//! systemd credentials handed to the guest through QEMU's SMBIOS type 11 table.
//!
//! systemd (PID 1, in a VM) imports every SMBIOS type 11 string of the form
//! `io.systemd.credential.binary:<name>=<base64>` as the system credential
//! `<name>` (see systemd.system-credentials(7)). The harness uses this to add
//! its command channel from outside the image; tests use it to pass secrets.

use anyhow::{Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::qemu::escape_opt;

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

    /// The value of QEMU's `-smbios` option that carries this credential:
    /// `type=11,value=io.systemd.credential.binary:<name>=<base64>`, with
    /// commas doubled as QEMU's option syntax requires.
    pub fn smbios_arg(&self) -> String {
        let string = format!(
            "io.systemd.credential.binary:{}={}",
            self.name,
            STANDARD.encode(&self.value)
        );
        format!("type=11,value={}", escape_opt(&string))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, value: &[u8], expected: &str) {
        let cred = Credential::new(name, value).unwrap();
        assert_eq!(cred.smbios_arg(), expected);
    }

    #[test]
    fn smbios_encoding() {
        check(
            "systemd.extra-unit.foo.service",
            b"[Unit]\n",
            "type=11,value=io.systemd.credential.binary:systemd.extra-unit.foo.service=W1VuaXRdCg==",
        );
        check(
            "empty",
            b"",
            "type=11,value=io.systemd.credential.binary:empty=",
        );
        check(
            "bin",
            &[0, 0xff, b','],
            "type=11,value=io.systemd.credential.binary:bin=AP8s",
        );
        // A comma in the name is doubled for QEMU's option parser.
        check(
            "a,b",
            b"x",
            "type=11,value=io.systemd.credential.binary:a,,b=eA==",
        );
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
