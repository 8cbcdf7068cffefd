//! Go modules: Tailscale's source build pinned the way `go.sum` pins it.
//!
//! - [`dirhash`]: Go's `h1:` hashes of module zips and `go.mod` files;
//! - [`zip`]: reading the module zips the proxy serves;
//! - [`toolchain`]: the host's `go`, checked against the locked version;
//! - [`resolve`]: `lock` asks `go` which modules build the wanted packages;
//! - [`store`]: module files in the store, verified by `h1:` before they
//!   enter and whenever a build reads them, laid out as a `file://` GOPROXY.

pub mod dirhash;
pub mod resolve;
pub mod store;
pub mod toolchain;
pub mod zip;

/// A module path as the module proxy and cache spell it: each upper-case
/// letter becomes `!` and its lower-case form (`github.com/!kodeworks`).
pub fn escape_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if c.is_ascii_uppercase() {
            out.push('!');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The inverse of [`escape_path`]; `None` for a malformed escape.
pub fn unescape_path(escaped: &str) -> Option<String> {
    let mut out = String::with_capacity(escaped.len());
    let mut bang = false;
    for c in escaped.chars() {
        if bang {
            if !c.is_ascii_lowercase() {
                return None;
            }
            out.push(c.to_ascii_uppercase());
            bang = false;
        } else if c == '!' {
            bang = true;
        } else if c.is_ascii_uppercase() {
            return None;
        } else {
            out.push(c);
        }
    }
    (!bang).then_some(out)
}

/// A real module for tests: `github.com/kr/fs v0.1.0` as the proxy serves
/// it, with its go.sum hashes.
#[cfg(test)]
pub(crate) mod fixture {
    use image_spec::lock::GoModule;

    /// Its zip.
    pub const ZIP: &[u8] = include_bytes!("testdata/kr-fs-v0.1.0.zip");
    /// Its go.mod.
    pub const MOD: &[u8] = include_bytes!("testdata/kr-fs-v0.1.0.mod");

    /// Its lock entry.
    pub fn kr_fs() -> GoModule {
        GoModule {
            path: "github.com/kr/fs".into(),
            version: "v0.1.0".into(),
            zip: Some("h1:Jskdu9ieNAYnjxsi0LbQp1ulIKZV1LAFgK1tWhpZgl8=".into()),
            go_mod: "h1:FFnZGqtBN9Gxj7eW1uZ42v5BccTP0vu6NEaFoC2HwRg=".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_round_trips() {
        let p = "github.com/Kodeworks/golang-image-ico";
        assert_eq!(escape_path(p), "github.com/!kodeworks/golang-image-ico");
        assert_eq!(unescape_path(&escape_path(p)).as_deref(), Some(p));
        assert_eq!(unescape_path("github.com/Bad"), None);
        assert_eq!(unescape_path("trailing!"), None);
    }
}
