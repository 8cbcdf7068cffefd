//! SEC-5: the metadata service (169.254.169.254, which serves the
//! user-data secrets) is closed to every local user but root and to all
//! forwarded traffic (sandbox containers), so a prompt-injected session
//! cannot read the secrets again.
//!
//! Mechanism: two rules in iptables' `raw` table (iptables-nft on Debian 13):
//! - `OUTPUT -d 169.254.169.254 -m owner ! --uid-owner 0 -j DROP`: a local
//!   process not running as root gets `EPERM` from `connect()` at once
//!   (a drop in the output path of a local socket is reported to it);
//! - `PREROUTING -d 169.254.169.254 -j DROP`: anything arriving from an
//!   interface, which is how every container packet (docker0, any user
//!   bridge) enters the host, is dropped before routing. Root's own
//!   requests never pass PREROUTING, and the answers to them have the
//!   metadata address as source, not destination.
//!
//! Why `raw`: neither UFW (`MANAGE_BUILTINS=no`) nor Docker flushes or
//! reorders it, and an ACCEPT in their `filter` chains cannot undo a drop
//! that already happened there, so no ordering with their rules matters.
//! Why not `DOCKER-USER`: it exists only once dockerd runs and covers only
//! Docker's own bridges.
//!
//! LAT-1 (same table, same unit): packets entering from a container bridge
//! (`docker0`, `br-+`) towards the tailnet (100.64.0.0/10,
//! fd7a:115c:a1e0::/48), RFC 1918, ULA or link-local destinations are
//! dropped, so a sandbox reaches the internet but not the host's networks.
//! The raw table sees them before Docker's own `filter` rules, and the rules
//! exist before dockerd starts (which `DOCKER-USER` does not).
//!
//! The sandboxes' rootless daemon (`files::sandbox_runtime`) has no bridge
//! on the host: its containers' traffic leaves through slirp4netns, a
//! process of the daemon's account, so the same destinations are dropped
//! in `raw OUTPUT` for that uid (and the metadata rule above already covers
//! it, as for every non-root user). A private-range resolver is therefore
//! out of the sandboxes' reach too; Hetzner's resolvers are public.
//!
//! Persistence: the same binary applies the rules at every boot from the
//! unit [`unit_text`] (`openclaw-firstboot --metadata-firewall`), ordered
//! before networking, Docker and the gateway's user manager. The image
//! should ship that unit enabled (then the endpoint is closed to non-root
//! users from the very first boot; first boot itself runs as root); if it
//! does not, first boot's last step installs and enables it.
//!
//! No root-owned container daemon runs (ESC-1), so no container can be
//! put on the host's own network namespace as root.

use super::Error;
use super::host::Runner;

/// The metadata service's address.
pub const METADATA_IP: &str = "169.254.169.254";
/// The unit that applies the rules at boot.
pub const UNIT_NAME: &str = "openclaw-metadata-firewall.service";
/// `iptables` in the image (iptables-nft).
pub const IPTABLES: &str = "/usr/sbin/iptables";
/// `ip6tables` in the image (iptables-nft).
pub const IP6TABLES: &str = "/usr/sbin/ip6tables";
const COMMENT: &str = "openclaw SEC-5: metadata service closed";
const LAT_COMMENT: &str = "openclaw LAT-1: no sandbox egress to the tailnet or private ranges";

/// Interfaces container traffic enters the host from: Docker's default
/// bridge and its user-defined bridges (`br-<id>`).
/// The uid of the sandboxes' rootless daemon, whose slirp4netns carries
/// every container packet out (a string for the rule's argv; a test checks
/// it against `files::sandbox_runtime::UID`).
pub const SANDBOX_UID: &str = "900";

pub const CONTAINER_INTERFACES: [&str; 2] = ["docker0", "br-+"];

/// LAT-1's IPv4 destinations: the tailnet (CGNAT), RFC 1918 and link-local.
pub const PRIVATE_V4: [&str; 5] = [
    "100.64.0.0/10",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
];
/// LAT-1's IPv6 destinations: Tailscale's ULA range, all ULAs, link-local.
pub const PRIVATE_V6: [&str; 3] = ["fd7a:115c:a1e0::/48", "fc00::/7", "fe80::/10"];

/// One rule of the `raw` table: the tool (`iptables` or `ip6tables`), the
/// chain and the rule specification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The program: [`IPTABLES`] or [`IP6TABLES`].
    pub tool: &'static str,
    /// `OUTPUT` or `PREROUTING`.
    pub chain: &'static str,
    /// The rule after the chain name.
    pub spec: Vec<&'static str>,
}

/// The rules in the `raw` table.
///
/// SEC-5: two rules close the metadata service (see the module doc).
/// LAT-1: packets entering from a container bridge towards the tailnet or
/// a private range are dropped before routing, so a sandbox reaches the
/// internet but not the host's networks, the tailnet or the host itself
/// through its bridge address. Container-to-container traffic on one
/// bridge is private too and is dropped as well.
pub fn rules() -> Vec<Rule> {
    let mut out = vec![
        drop_rule(
            IPTABLES,
            "OUTPUT",
            &[
                "-d",
                "169.254.169.254/32",
                "-m",
                "owner",
                "!",
                "--uid-owner",
                "0",
            ],
            COMMENT,
        ),
        drop_rule(
            IPTABLES,
            "PREROUTING",
            &["-d", "169.254.169.254/32"],
            COMMENT,
        ),
    ];
    for (tool, ranges) in [(IPTABLES, &PRIVATE_V4[..]), (IP6TABLES, &PRIVATE_V6[..])] {
        for range in ranges {
            out.push(drop_rule(
                tool,
                "OUTPUT",
                &["-d", range, "-m", "owner", "--uid-owner", SANDBOX_UID],
                LAT_COMMENT,
            ));
        }
        for iface in CONTAINER_INTERFACES {
            for range in ranges {
                out.push(drop_rule(
                    tool,
                    "PREROUTING",
                    &["-i", iface, "-d", range],
                    LAT_COMMENT,
                ));
            }
        }
    }
    out
}

/// A `DROP` rule of `tool` in `chain` for the packets `matches` selects,
/// tagged with `comment` (so the rules can be found and replaced).
fn drop_rule(
    tool: &'static str,
    chain: &'static str,
    matches: &[&'static str],
    comment: &'static str,
) -> Rule {
    let mut spec = matches.to_vec();
    spec.extend(["-m", "comment", "--comment", comment, "-j", "DROP"]);
    Rule { tool, chain, spec }
}

/// Applies the rules if they are not there yet (`-C`, then `-A`, so they
/// keep their order). Returns how many were added.
pub fn apply(runner: &dyn Runner) -> Result<usize, Error> {
    let mut inserted = 0;
    for rule in rules() {
        let Rule { tool, chain, spec } = &rule;
        let mut check = vec!["-w", "-t", "raw", "-C", chain];
        check.extend(spec);
        let out = runner.run(tool, &check).map_err(|e| Error::Command {
            command: format!("{tool} -t raw -C {chain}"),
            status: "could not start".into(),
            detail: e.to_string(),
        })?;
        if out.success() {
            continue;
        }
        let mut append = vec!["-w", "-t", "raw", "-A", chain];
        append.extend(spec);
        let out = runner.run(tool, &append).map_err(|e| Error::Command {
            command: format!("{tool} -t raw -A {chain}"),
            status: "could not start".into(),
            detail: e.to_string(),
        })?;
        if !out.success() {
            return Err(Error::Command {
                command: format!("{tool} -t raw -A {chain} {}", spec.join(" ")),
                status: format!("exit {:?}", out.code),
                detail: format!(": {}", tail(&out.stderr)),
            });
        }
        inserted += 1;
    }
    Ok(inserted)
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

/// The boot-time unit that keeps the endpoint closed (SEC-5).
pub fn unit_text() -> String {
    format!(
        "# SEC-5: the metadata service (user-data secrets) is closed to every user\n\
         # but root and to container traffic, on every boot, before networking.\n\
         # LAT-1: container traffic to the tailnet and private ranges is dropped.\n\
         [Unit]\n\
         Description=Close the metadata service to non-root users and containers; no sandbox egress to private ranges\n\
         DefaultDependencies=no\n\
         After=local-fs.target\n\
         # ufw.service starts after this unit, not beside it: both would write the\n\
         # xtables at once, and ufw.service then failed at boot (vm-test, 2026-12-06).\n\
         Before=network-pre.target ufw.service openclaw-firstboot.service user@{sandbox_uid}.service shutdown.target\n\
         Wants=network-pre.target\n\
         Conflicts=shutdown.target\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         RemainAfterExit=yes\n\
         ExecStart={bin} --metadata-firewall\n\
         \n\
         [Install]\n\
         WantedBy=sysinit.target\n",
        bin = super::BINARY_PATH,
        sandbox_uid = SANDBOX_UID,
    )
}

#[cfg(test)]
mod tests {
    /// Every rule as the agent applies it (`<tool> -t raw -A <chain> <spec>`
    /// shape): review a change here as a firewall change.
    #[test]
    fn rules_as_applied() {
        let text: String = super::rules()
            .iter()
            .map(|r| format!("{} {} {}\n", r.tool, r.chain, r.spec.join(" ")))
            .collect();
        insta::assert_snapshot!(text);
    }
}
