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
//! Persistence: the same binary applies the rules at every boot from the
//! unit [`unit_text`] (`openclaw-firstboot --metadata-firewall`), ordered
//! before networking, Docker and the gateway's user manager. The image
//! should ship that unit enabled (then the endpoint is closed to non-root
//! users from the very first boot; first boot itself runs as root); if it
//! does not, first boot's last step installs and enables it.
//!
//! Residual: `openclaw` is in the `docker` group, which is root-equivalent
//! (it could start a root container on the host network). SEC-5 is about
//! the sandboxed sessions, which have no Docker socket.

use super::Error;
use super::host::Runner;

/// The metadata service's address.
pub const METADATA_IP: &str = "169.254.169.254";
/// The unit that applies the rules at boot.
pub const UNIT_NAME: &str = "openclaw-metadata-firewall.service";
/// `iptables` in the image (iptables-nft).
pub const IPTABLES: &str = "/usr/sbin/iptables";
const COMMENT: &str = "openclaw SEC-5: metadata service closed";

/// The rules, as (chain, rule spec) in the `raw` table.
pub fn rules() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        (
            "OUTPUT",
            vec![
                "-d",
                "169.254.169.254/32",
                "-m",
                "owner",
                "!",
                "--uid-owner",
                "0",
                "-m",
                "comment",
                "--comment",
                COMMENT,
                "-j",
                "DROP",
            ],
        ),
        (
            "PREROUTING",
            vec![
                "-d",
                "169.254.169.254/32",
                "-m",
                "comment",
                "--comment",
                COMMENT,
                "-j",
                "DROP",
            ],
        ),
    ]
}

/// Applies the rules if they are not there yet (`-C`, then `-I … 1`).
/// Returns how many were inserted.
pub fn apply(runner: &dyn Runner) -> Result<usize, Error> {
    let mut inserted = 0;
    for (chain, spec) in rules() {
        let mut check = vec!["-w", "-t", "raw", "-C", chain];
        check.extend(&spec);
        let out = runner.run(IPTABLES, &check).map_err(|e| Error::Command {
            command: format!("{IPTABLES} -t raw -C {chain}"),
            status: "could not start".into(),
            detail: e.to_string(),
        })?;
        if out.success() {
            continue;
        }
        let mut insert = vec!["-w", "-t", "raw", "-I", chain, "1"];
        insert.extend(&spec);
        let out = runner.run(IPTABLES, &insert).map_err(|e| Error::Command {
            command: format!("{IPTABLES} -t raw -I {chain}"),
            status: "could not start".into(),
            detail: e.to_string(),
        })?;
        if !out.success() {
            return Err(Error::Command {
                command: format!("{IPTABLES} -t raw -I {chain} 1 {}", spec.join(" ")),
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
         [Unit]\n\
         Description=Close the cloud metadata service to non-root users and containers\n\
         DefaultDependencies=no\n\
         After=local-fs.target\n\
         Before=network-pre.target docker.service openclaw-firstboot.service user@1000.service shutdown.target\n\
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
    )
}
