//! Networking for Hetzner: DHCPv4 on the first NIC via systemd-networkd.
//! IPv6 (static on Hetzner, no SLAAC) is configured at first boot from the
//! metadata service.

use image_spec::Spec;

use crate::tree::Tree;

pub(super) fn render(tree: &mut Tree, _spec: &Spec) {
    tree.file(
        "etc/systemd/network/10-wired.network",
        0o644,
        "[Match]\n\
         Name=en* eth*\n\
         Type=ether\n\
         \n\
         [Network]\n\
         DHCP=ipv4\n\
         LinkLocalAddressing=ipv6\n\
         IPv6AcceptRA=no\n\
         \n\
         [DHCPv4]\n\
         UseDomains=yes\n",
    );
    // networkd + resolved: enabled by symlinks (the unit files come from systemd).
    tree.symlink(
        "etc/systemd/system/multi-user.target.wants/systemd-networkd.service",
        "/usr/lib/systemd/system/systemd-networkd.service",
    );
    tree.symlink(
        "etc/systemd/system/sockets.target.wants/systemd-networkd.socket",
        "/usr/lib/systemd/system/systemd-networkd.socket",
    );
    tree.symlink(
        "etc/systemd/system/network-online.target.wants/systemd-networkd-wait-online.service",
        "/usr/lib/systemd/system/systemd-networkd-wait-online.service",
    );
}
