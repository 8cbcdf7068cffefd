//! Tailscale in the image (TS-1): built from its Go module source
//! ([`source`], the default) or taken from the official static tarball
//! ([`tarball`]). Either way the same four files go where the Debian
//! package puts them: `/usr/bin/tailscale`, `/usr/sbin/tailscaled`,
//! `/usr/lib/systemd/system/tailscaled.service` (enabled) and
//! `/etc/default/tailscaled`, with the state directory `/var/lib/tailscale`
//! (0700). Logging in happens at first boot (the auth key is a secret).

pub mod source;
pub mod tarball;

use appliance::Tree;

/// The files the image needs from a Tailscale release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    /// The CLI.
    pub tailscale: Vec<u8>,
    /// The daemon.
    pub tailscaled: Vec<u8>,
    /// `tailscaled.service`.
    pub service: Vec<u8>,
    /// `tailscaled.defaults` (`/etc/default/tailscaled`).
    pub defaults: Vec<u8>,
}

/// The appliance layer's Tailscale part.
pub fn tree(files: Files) -> Tree {
    let mut t = Tree::default();
    t.file("usr/bin/tailscale", 0o755, files.tailscale);
    t.file("usr/sbin/tailscaled", 0o755, files.tailscaled);
    t.file(
        "usr/lib/systemd/system/tailscaled.service",
        0o644,
        files.service,
    );
    t.file("etc/default/tailscaled", 0o644, files.defaults);
    t.symlink(
        "etc/systemd/system/multi-user.target.wants/tailscaled.service",
        "/usr/lib/systemd/system/tailscaled.service",
    );
    t.dir("var/lib/tailscale", 0o700, 0, 0);
    t
}
