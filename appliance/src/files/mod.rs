//! Every file the appliance layer lays over the Debian root filesystem,
//! rendered from the spec. Pure: same spec and context, same bytes.

mod firewall;
mod network;
mod openclaw_config;
pub mod sandbox_runtime;
mod system;
mod units;

use image_spec::Spec;

use crate::tree::Tree;

pub use openclaw_config::openclaw_json;

/// Facts about the build that the rendered files depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// Whether the Tailscale tarball is in this image (NET-6, NET-8, TS-1).
    pub tailscale: bool,
    /// ext4 UUID of the root filesystem (fstab, GRUB).
    pub root_fs_uuid: String,
    /// FAT volume id of the ESP, as `XXXX-XXXX` (fstab).
    pub esp_volume_id: String,
    /// Image ID (`sha256:…`) of the sandbox image baked into Docker's image
    /// store, checked at boot (AGT-2).
    pub sandbox_image_id: String,
}

/// Where the appliance keeps its own data inside the image.
pub const SHARE_DIR: &str = "usr/share/openclaw-appliance";
pub use sandbox_runtime::DOCKER_ROOT;
/// The build manifest inside the image (SUP-3).
pub const MANIFEST: &str = "usr/share/openclaw-appliance/manifest.json";

/// Renders the whole appliance layer.
pub fn render(spec: &Spec, ctx: &Context) -> Tree {
    let mut tree = Tree::default();
    system::render(&mut tree, spec, ctx);
    network::render(&mut tree, spec);
    firewall::render(&mut tree, spec);
    sandbox_runtime::render(&mut tree, spec);
    units::render(&mut tree, spec, ctx);
    openclaw_config::render(&mut tree, spec);
    tree
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn spec() -> Spec {
        Spec::parse("image.toml", include_str!("../../../image.toml")).unwrap()
    }

    pub(crate) fn ctx(tailscale: bool) -> Context {
        Context {
            tailscale,
            root_fs_uuid: "11111111-2222-4333-8444-555555555555".into(),
            esp_volume_id: "ABCD-1234".into(),
            sandbox_image_id: format!("sha256:{}", "e".repeat(64)),
        }
    }

    #[test]
    fn every_rendered_file() {
        let tree = render(&spec(), &ctx(false));
        let mut listing = String::new();
        for (path, entry) in tree.entries() {
            match entry {
                crate::Entry::File {
                    mode,
                    uid,
                    gid,
                    data,
                } => {
                    listing.push_str(&format!(
                        "/{path} file {mode:o} {uid}:{gid} {} bytes\n",
                        data.len()
                    ));
                }
                crate::Entry::Dir { mode, uid, gid } => {
                    listing.push_str(&format!("/{path} dir {mode:o} {uid}:{gid}\n"));
                }
                crate::Entry::Symlink { target } => {
                    listing.push_str(&format!("/{path} -> {target}\n"))
                }
            }
        }
        insta::assert_snapshot!("listing", listing);
        for (path, entry) in tree.entries() {
            if let crate::Entry::File { data, .. } = entry {
                let name = path.replace('/', "__");
                insta::assert_snapshot!(name, String::from_utf8_lossy(data));
            }
        }
    }

    #[test]
    fn openssh_switch_adds_a_hardened_server() {
        let off = render(&spec(), &ctx(false));
        assert!(
            off.get("etc/ssh/sshd_config.d/50-openclaw-hardening.conf")
                .is_none()
        );
        let text = include_str!("../../../image.toml").replace("openssh = false", "openssh = true");
        assert_ne!(
            text,
            include_str!("../../../image.toml"),
            "image.toml has no `openssh = false`"
        );
        let on_spec = Spec::parse("image.toml", &text).unwrap();
        assert!(on_spec.packages.host.iter().any(|p| p == "openssh-server"));
        let on = render(&on_spec, &ctx(false));
        let conf = on
            .text("etc/ssh/sshd_config.d/50-openclaw-hardening.conf")
            .unwrap();
        insta::assert_snapshot!("sshd-hardening", conf);
        for line in [
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin no",
        ] {
            assert!(conf.lines().any(|l| l == line), "{line}");
        }
    }

    #[test]
    fn no_secret_shaped_values() {
        // SEC-1: the image carries no token; openclaw.json has no auth token.
        let tree = render(&spec(), &ctx(true));
        let cfg = tree.text("home/openclaw/.openclaw/openclaw.json").unwrap();
        let v: serde_json::Value = serde_json::from_str(&cfg).unwrap();
        assert!(v["gateway"]["auth"].get("token").is_none());
    }
}
