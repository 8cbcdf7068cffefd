//! The systemd unit that runs the agent once.

use super::{BINARY_PATH, DONE_MARKER, VOLUME_UNIT};

/// `openclaw-firstboot.service`: a oneshot system unit, skipped once the
/// done marker exists, ordered after the network and `tailscaled` and
/// before the sandbox image load, the gateway's user manager and sshd.
///
/// Not `RemainAfterExit`: once the service exits, systemd unmounts its
/// credentials directory, so the user-data does not stay in `/run`.
pub fn unit_text() -> String {
    format!(
        "# SEC-2, SEC-4: secrets arrive here, once. The gateway's user unit waits for\n\
         # {DONE_MARKER}; if this fails, the gateway stays down and the console says why.\n\
         [Unit]\n\
         Description=OpenClaw appliance first boot (secrets, Tailscale login, swap, host keys)\n\
         ConditionPathExists=!{DONE_MARKER}\n\
         Wants=network-online.target tailscaled.service\n\
         # UPD-1: the state volume (when attached) is mounted first; when it\n\
         # cannot be (foreign, missing), first boot does not run.\n\
         Requires={VOLUME_UNIT}\n\
         After=network-online.target tailscaled.service openclaw-metadata-firewall.service {VOLUME_UNIT}\n\
         Before=openclaw-sandbox-image.service user@1000.service ssh.service\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart={BINARY_PATH}\n\
         # Secrets from the hypervisor (SMBIOS type 11 / fw_cfg credentials openclaw.*)\n\
         # appear in $CREDENTIALS_DIRECTORY; else the Hetzner metadata service is asked.\n\
         ImportCredential=openclaw.*\n\
         StandardOutput=journal+console\n\
         StandardError=journal+console\n\
         TimeoutStartSec=20min\n\
         # Every file the agent writes gets an explicit mode; this umask is for the\n\
         # tools it runs (ssh-keygen's public keys stay world-readable).\n\
         UMask=0022\n\
         RuntimeDirectory=openclaw-firstboot\n\
         RuntimeDirectoryMode=0700\n\
         StateDirectory=openclaw-appliance\n\
         StateDirectoryMode=0755\n\
         # Sandboxing that leaves what first boot must do: write /etc, /home, /swapfile\n\
         # and /var/lib, grow the root partition, swapon, iptables, sethostname.\n\
         PrivateTmp=yes\n\
         NoNewPrivileges=yes\n\
         ProtectControlGroups=yes\n\
         ProtectKernelLogs=yes\n\
         RestrictRealtime=yes\n\
         RestrictSUIDSGID=yes\n\
         RestrictNamespaces=yes\n\
         LockPersonality=yes\n\
         SystemCallArchitectures=native\n\
         RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n"
    )
}
