//! The catalogue: one entry per invariant ID, in `invariants.md` order.

use super::checks::{self, Check};

/// When a case runs relative to the machine's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Read from the build outputs, no machine needed.
    Build,
    /// On the running machine after first boot.
    Live,
    /// Needs a shutdown, crash or reboot: runs after the live cases.
    Disruptive,
}

/// One invariant and how it is proven.
pub struct Invariant {
    /// Stable ID (`NET-1`).
    pub id: &'static str,
    /// Short title.
    pub title: &'static str,
    /// When it runs.
    pub phase: Phase,
    /// The check.
    pub check: Check,
}

macro_rules! inv {
    ($id:literal, $title:literal, $phase:ident, $check:path) => {
        Invariant {
            id: $id,
            title: $title,
            phase: Phase::$phase,
            check: $check,
        }
    };
}

/// The IDs whose outcome can depend on the firmware the image boots
/// under, and so run on every firmware pass, also in a split run
/// (`SuiteOptions::split`): booting and reaching a settled
/// `multi-user.target` (BOOT-1), growing the root filesystem on the disk the
/// firmware found (BOOT-2), first boot receiving and refusing secrets
/// (SEC-2) and surviving a power cut and a reboot (SEC-4), and what the
/// external interface answers (NET-4). Every other invariant is about the
/// running system above the boot loader and is proven once, on the primary
/// pass.
pub const FIRMWARE_DEPENDENT: &[&str] = &["BOOT-1", "BOOT-2", "SEC-2", "SEC-4", "NET-4"];

/// Every invariant of `invariants.md`.
pub const CATALOGUE: &[Invariant] = &[
    inv!(
        "NET-1",
        "firewall active: deny incoming, allow outgoing",
        Live,
        checks::net::net_1
    ),
    inv!(
        "NET-2",
        "only inbound allow is on tailscale0 (v4 and v6)",
        Live,
        checks::net::net_2
    ),
    inv!(
        "NET-3",
        "gateway listens on loopback only",
        Live,
        checks::net::net_3
    ),
    inv!(
        "NET-4",
        "external peer sees every probed port closed",
        Live,
        checks::external::net_4
    ),
    inv!(
        "NET-5",
        "traffic arriving on tailscale0 is accepted",
        Live,
        checks::ts::net_5
    ),
    inv!(
        "NET-6",
        "OpenClaw config valid and hardened",
        Live,
        checks::net::net_6
    ),
    inv!(
        "NET-7",
        "gateway refuses unauthenticated requests, accepts the token",
        Live,
        checks::net::net_7
    ),
    inv!(
        "NET-8",
        "tailscale serve proxies to the gateway, Funnel off",
        Live,
        checks::ts::net_8
    ),
    inv!(
        "SRV-1",
        "gateway runs as openclaw from a system unit it cannot change",
        Live,
        checks::srv::srv_1
    ),
    inv!(
        "SRV-2",
        "no account has a usable password",
        Live,
        checks::srv::srv_2
    ),
    inv!(
        "SRV-3",
        "openclaw has no sudo rights",
        Live,
        checks::srv::srv_3
    ),
    inv!(
        "SRV-4",
        "unattended-upgrades for security, no automatic reboot",
        Live,
        checks::srv::srv_4
    ),
    inv!(
        "SRV-5",
        "state directories and files have private modes",
        Live,
        checks::srv::srv_5
    ),
    inv!(
        "SRV-6",
        "sysctls set; swap file made at first boot",
        Live,
        checks::srv::srv_6
    ),
    inv!(
        "SRV-7",
        "gateway unit sandboxed by systemd",
        Live,
        checks::srv::srv_7
    ),
    inv!(
        "SSH-1",
        "sshd hardened when OpenSSH is enabled",
        Live,
        checks::srv::ssh_1
    ),
    inv!(
        "SSH-2",
        "SSH host keys generated at first boot, never shipped",
        Live,
        checks::srv::ssh_2
    ),
    inv!(
        "SEC-1",
        "the disk image contains no secret",
        Build,
        checks::sec::sec_1
    ),
    inv!(
        "SEC-2",
        "secrets arrive at first boot, validated, fail closed",
        Disruptive,
        checks::sec::sec_2
    ),
    inv!(
        "SEC-3",
        "no secret outside its destination files (journal, memory file systems, raw disk)",
        Disruptive,
        checks::sec::sec_3
    ),
    inv!(
        "SEC-4",
        "first boot is idempotent and survives a power cut",
        Disruptive,
        checks::sec::sec_4
    ),
    inv!(
        "SEC-5",
        "metadata service unreachable for openclaw and containers",
        Live,
        checks::sec::sec_5
    ),
    inv!(
        "AGT-1",
        "sandbox config: mode all, bridge, elevated off",
        Live,
        checks::agt::agt_1
    ),
    inv!(
        "AGT-2",
        "sandbox image present locally with the recorded ID",
        Live,
        checks::agt::agt_2
    ),
    inv!(
        "AGT-3",
        "sandbox image user 1000, no setuid or setgid file",
        Live,
        checks::agt::agt_3
    ),
    inv!(
        "AGT-4",
        "sandbox container created hardened",
        Live,
        checks::agt::agt_4
    ),
    inv!(
        "AGT-5",
        "inside the sandbox: no caps, no_new_privs, system dirs read-only",
        Live,
        checks::agt::agt_5
    ),
    inv!(
        "AGT-6",
        "host gateway unreachable from the sandbox",
        Live,
        checks::agt::agt_6
    ),
    inv!(
        "ESC-1",
        "no path from openclaw to root",
        Live,
        checks::esc::esc_1
    ),
    inv!(
        "ESC-2",
        "the sandbox cannot make the host run its code",
        Live,
        checks::esc_sync::esc_2
    ),
    inv!(
        "ESC-3",
        "one sandbox cannot starve the host",
        Live,
        checks::esc::esc_3
    ),
    inv!(
        "ESC-4",
        "host-side tools denied to sandboxed sessions",
        Live,
        checks::esc::esc_4
    ),
    inv!(
        "ESC-5",
        "container traffic cannot bypass the firewall",
        Live,
        checks::esc::esc_5
    ),
    inv!("NODE-1", "node exec off", Live, checks::agt::node_1),
    inv!(
        "LAT-1",
        "sandbox cannot reach the tailnet or private ranges",
        Live,
        checks::agt::lat_1
    ),
    inv!(
        "TS-1",
        "Tailscale preinstalled, enabled, logged in without argv secrets",
        Live,
        checks::ts::ts_1
    ),
    inv!(
        "TS-2",
        "openclaw cannot reconfigure Tailscale",
        Live,
        checks::ts::ts_2
    ),
    inv!(
        "SSH-3",
        "Tailscale SSH is the only shell path",
        Live,
        checks::ts::ssh_3
    ),
    inv!(
        "SUP-1",
        "what ships is what the lock pinned (verified in the guest)",
        Live,
        checks::sup::sup_1
    ),
    inv!(
        "SUP-2",
        "no plugins unless pinned in plugins.allow",
        Live,
        checks::sec::sup_2
    ),
    inv!(
        "SUP-3",
        "manifest beside and inside the image",
        Live,
        checks::sec::sup_3
    ),
    inv!(
        "INF-1",
        "the Hetzner token never enters the image",
        Build,
        checks::sec::inf_1
    ),
    inv!(
        "INF-2",
        "workspace sync: deploy key 600, IdentitiesOnly alias, hourly timer, a sync arrives",
        Live,
        checks::sec::inf_2
    ),
    inv!(
        "UPD-1",
        "durable state lives on the state volume",
        Live,
        checks::upd::upd_1
    ),
    inv!(
        "UPD-2",
        "a rebuild keeps token, sessions, workspace, node",
        Live,
        checks::upd::upd_2
    ),
    inv!(
        "UPD-3",
        "without a volume, first boot warns of state loss",
        Live,
        checks::upd::upd_3
    ),
    inv!(
        "UPD-4",
        "a foreign volume is never formatted or written",
        Live,
        checks::upd::upd_4
    ),
    inv!(
        "BOOT-1",
        "boots under BIOS and UEFI with no failed units",
        Live,
        checks::srv::boot_1
    ),
    inv!(
        "BOOT-2",
        "root filesystem grows to fill a larger disk",
        Live,
        checks::srv::boot_2
    ),
    inv!(
        "BOOT-3",
        "two builds are bit-for-bit identical",
        Build,
        checks::sec::boot_3
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_match_the_catalogue_file() {
        let mut ids: Vec<&str> = CATALOGUE.iter().map(|i| i.id).collect();
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), n, "duplicate IDs");
        for id in FIRMWARE_DEPENDENT {
            assert!(
                ids.contains(id),
                "FIRMWARE_DEPENDENT names {id}, not in the catalogue"
            );
        }
        // The catalogue lives beside the repository (../shared/invariants.md).
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/invariants.md");
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let mut expected: Vec<String> = text
                    .lines()
                    .filter_map(|l| l.strip_prefix("- "))
                    .filter_map(|l| l.split_whitespace().next())
                    .filter(|w| {
                        w.contains('-') && w.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                    })
                    .map(str::to_string)
                    .collect();
                expected.sort();
                let ours: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
                assert_eq!(
                    ours, expected,
                    "the catalogue must list exactly the IDs of invariants.md"
                );
            }
            Err(e) => panic!(
                "{path}: {e}: the catalogue is compared with the contract; \
                 check out ../shared beside the repository"
            ),
        }
    }
}
