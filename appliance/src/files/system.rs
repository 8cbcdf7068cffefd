//! Base system files: identity, mounts, boot menu, sysctls (SRV-6), updates (SRV-4).

use image_spec::Spec;

use super::Context;
use crate::tree::Tree;

pub(super) fn render(tree: &mut Tree, spec: &Spec, ctx: &Context) {
    let host = &spec.image.hostname;
    tree.file("etc/hostname", 0o644, format!("{host}\n"));
    tree.file(
        "etc/hosts",
        0o644,
        format!("127.0.0.1\tlocalhost\n127.0.1.1\t{host}\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"),
    );
    // Empty machine-id: systemd makes a fresh one at first boot (SEC-1).
    tree.file("etc/machine-id", 0o444, "");
    tree.file(
        "etc/fstab",
        0o644,
        format!(
            "# Written by the image build; the root grows to fill the disk at first boot (BOOT-2).\n\
             # The swap file (SRV-6) is made and enabled by first boot, never shipped.\n\
             UUID={root}\t/\text4\tdefaults,x-systemd.growfs\t0\t1\n\
             UUID={esp}\t/boot/efi\tvfat\tumask=0077,nofail\t0\t2\n",
            root = ctx.root_fs_uuid,
            esp = ctx.esp_volume_id,
        ),
    );
    tree.file("boot/grub/grub.cfg", 0o644, grub_cfg(&ctx.root_fs_uuid));
    tree.file(
        "etc/sysctl.d/60-openclaw.conf",
        0o644,
        "# SRV-6: many files watched by the gateway; swap only under pressure.\n\
         fs.inotify.max_user_watches = 524288\n\
         vm.swappiness = 1\n",
    );
    tree.file(
        "etc/apt/apt.conf.d/20auto-upgrades",
        0o644,
        "APT::Periodic::Update-Package-Lists \"1\";\nAPT::Periodic::Unattended-Upgrade \"1\";\n",
    );
    tree.file(
        "etc/apt/apt.conf.d/52openclaw-unattended-upgrades",
        0o644,
        "// SRV-4: security updates only, never an automatic reboot.\n\
         Unattended-Upgrade::Origins-Pattern {\n\
         \x20       \"origin=Debian,codename=${distro_codename}-security,label=Debian-Security\";\n\
         };\n\
         Unattended-Upgrade::Automatic-Reboot \"false\";\n",
    );
    tree.file("etc/default/locale", 0o644, "LANG=C.UTF-8\n");
    if spec.features.openssh {
        // SSH-1: keys only, no root; reachable only on tailscale0 through
        // UFW (nothing else is allowed in). Host keys are made at first boot.
        tree.file(
            "etc/ssh/sshd_config.d/50-openclaw-hardening.conf",
            0o644,
            "# SSH-1: written by the image build (features.openssh = true).\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PermitRootLogin no\n\
             AuthenticationMethods publickey\n\
             PermitEmptyPasswords no\n\
             MaxAuthTries 3\n\
             X11Forwarding no\n\
             AllowAgentForwarding no\n\
             AllowStreamLocalForwarding no\n\
             PermitTunnel no\n",
        );
    }
}

/// GRUB's menu: serial and VGA console, the kernel through Debian's
/// `/vmlinuz` symlinks so kernel updates keep booting.
pub fn grub_cfg(root_fs_uuid: &str) -> String {
    format!(
        "# Written by the image build.\n\
         serial --unit=0 --speed=115200\n\
         terminal_input serial console\n\
         terminal_output serial console\n\
         set timeout=1\n\
         menuentry 'Debian GNU/Linux (OpenClaw appliance)' {{\n\
         \x20   search --no-floppy --fs-uuid --set=root {root_fs_uuid}\n\
         \x20   linux /vmlinuz root=UUID={root_fs_uuid} ro console=tty0 console=ttyS0,115200n8\n\
         \x20   initrd /initrd.img\n\
         }}\n"
    )
}
