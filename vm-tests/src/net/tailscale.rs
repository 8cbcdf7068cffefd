//! NET-5: traffic arriving on `tailscale0` is accepted — and only there.
//!
//! Proven on tailscaled's own `tailscale0`, logged in to the test tailnet
//! ([`crate::net::tailnet`]): one listener bound to `0.0.0.0:9999` in the
//! guest (`systemd-socket-activate`, from the image's systemd, answering
//! `ok`) must be reachable from the tailnet's admin node at the guest's
//! tailnet address, and must not be reachable from the external peer at
//! the guest's external address. Same socket, two paths, two outcomes: the
//! firewall's allow is bound to the interface, and it works. Without a
//! logged-in tailscaled there is no proof (NET-5 is then not run): a
//! stand-in interface named `tailscale0` would say nothing about
//! tailscaled, and would collide with the real one.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use anyhow::Result;

use super::tailnet::{AdminResult, TestTailnet};
use super::{Probe, TestNet};
use crate::machine::Machine;

/// The transient unit of the test listener.
pub const LISTENER_UNIT: &str = "vmtest-listener";
/// The test listener's port.
pub const LISTENER_PORT: u16 = 9999;
/// What the test listener answers.
pub const LISTENER_REPLY: &str = "ok";

/// What NET-5 saw.
#[derive(Debug, Clone)]
pub struct TailscaleProof {
    /// The guest's external address.
    pub external_ip: Ipv4Addr,
    /// The guest's tailnet address.
    pub tailnet_ip: IpAddr,
    /// The admin node's connect to the tailnet address (via tailscale0).
    pub via_tailscale: Probe,
    /// What the listener sent over that connection.
    pub reply: String,
    /// The external peer's connect to the external address, same port,
    /// same listener.
    pub via_external: Probe,
    /// Cleanup problems (they do not change the verdict).
    pub cleanup: Vec<String>,
}

impl TailscaleProof {
    /// Open and answering via tailscale0, not open via the external interface.
    pub fn passed(&self) -> bool {
        self.via_tailscale == Probe::Open
            && self.reply.trim() == LISTENER_REPLY
            && self.via_external != Probe::Open
    }

    /// A report line.
    pub fn detail(&self) -> String {
        let mut s = format!(
            "listener 0.0.0.0:{LISTENER_PORT} in the guest; from the tailnet's admin node via tailscale0 \
             {}:{LISTENER_PORT} {} (reply {:?}); from the external peer via the external interface {}:{LISTENER_PORT} {}",
            self.tailnet_ip, self.via_tailscale, self.reply, self.external_ip, self.via_external
        );
        if self.via_external == Probe::Open {
            s.push_str(
                " — the listener is reachable from outside: the allow is not bound to tailscale0",
            );
        }
        if self.via_tailscale != Probe::Open {
            s.push_str(" — traffic arriving on tailscale0 is not accepted");
        }
        for c in &self.cleanup {
            s.push_str(&format!("; cleanup: {c}"));
        }
        s
    }
}

/// Proves NET-5 on a booted machine logged in to `tailnet` at
/// `tailnet_ip` (see the module docs). Leaves the guest as it found it
/// (best effort; cleanup problems are listed in the proof).
pub fn prove_tailscale_allow(
    machine: &mut Machine,
    net: &TestNet,
    tailnet: &TestTailnet,
    tailnet_ip: IpAddr,
) -> Result<TailscaleProof> {
    let external_ip = net.guest_ip(Duration::from_secs(120))?;
    let probes = listen_and_probe(machine, net, tailnet, tailnet_ip, external_ip);
    let mut cleanup = Vec::new();
    // `--collect`: the stopped unit is unloaded, failed or not.
    if let Err(e) = machine.succeed(&format!(
        "systemctl stop {LISTENER_UNIT}.service 2>/dev/null || true\n! systemctl is-active --quiet {LISTENER_UNIT}.service"
    )) {
        cleanup.push(format!("stopping the listener: {e:#}"));
    }
    let (via_tailscale, reply, via_external) = probes?;
    Ok(TailscaleProof {
        external_ip,
        tailnet_ip,
        via_tailscale,
        reply,
        via_external,
        cleanup,
    })
}

fn listen_and_probe(
    machine: &mut Machine,
    net: &TestNet,
    tailnet: &TestTailnet,
    tailnet_ip: IpAddr,
    external_ip: Ipv4Addr,
) -> Result<(Probe, String, Probe)> {
    machine.succeed(&format!(
        "systemd-run --unit={LISTENER_UNIT} --collect --quiet -- \
         systemd-socket-activate --listen=0.0.0.0:{LISTENER_PORT} --accept --inetd /bin/echo {LISTENER_REPLY}"
    ))?;
    machine.wait_for_open_port(LISTENER_PORT, Duration::from_secs(60))?;
    let target = std::net::SocketAddr::new(tailnet_ip, LISTENER_PORT).to_string();
    // The first connection may wait for the WireGuard path (DERP, then
    // direct): a few tries.
    let mut dial = tailnet.admin(&["dial", &target], None)?;
    for _ in 0..3 {
        if dial.ok {
            break;
        }
        std::thread::sleep(Duration::from_secs(3));
        dial = tailnet.admin(&["dial", &target], None)?;
    }
    let via_external = net.peer_tcp(
        IpAddr::V4(external_ip),
        LISTENER_PORT,
        Duration::from_secs(5),
    )?;
    Ok((dial_probe(&dial), dial.output, via_external))
}

/// An admin `dial` as a [`Probe`]: connected is open; a refusal is closed;
/// anything else (timeout, no route) filtered.
pub fn dial_probe(dial: &AdminResult) -> Probe {
    if dial.ok {
        Probe::Open
    } else if dial.error.contains("refused") {
        Probe::Closed
    } else {
        Probe::Filtered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proof(ts: Probe, reply: &str, ext: Probe) -> TailscaleProof {
        TailscaleProof {
            external_ip: Ipv4Addr::new(10, 77, 0, 10),
            tailnet_ip: IpAddr::V4(Ipv4Addr::new(100, 64, 0, 1)),
            via_tailscale: ts,
            reply: reply.into(),
            via_external: ext,
            cleanup: vec![],
        }
    }

    #[test]
    fn verdicts() {
        assert!(proof(Probe::Open, "ok\n", Probe::Filtered).passed());
        assert!(proof(Probe::Open, "ok\n", Probe::Closed).passed());
        // UFW off: reachable both ways.
        let p = proof(Probe::Open, "ok\n", Probe::Open);
        assert!(!p.passed());
        assert!(
            p.detail().contains("not bound to tailscale0"),
            "{}",
            p.detail()
        );
        assert!(p.detail().contains("100.64.0.1:9999"), "{}", p.detail());
        // The allow does not work.
        assert!(!proof(Probe::Filtered, "", Probe::Filtered).passed());
        assert!(!proof(Probe::Open, "", Probe::Filtered).passed());
    }

    #[test]
    fn dials_become_probes() {
        let r = |ok: bool, error: &str| AdminResult {
            ok,
            error: error.into(),
            ..AdminResult::default()
        };
        assert_eq!(dial_probe(&r(true, "")), Probe::Open);
        assert_eq!(
            dial_probe(&r(false, "connect: connection refused")),
            Probe::Closed
        );
        assert_eq!(
            dial_probe(&r(false, "context deadline exceeded")),
            Probe::Filtered
        );
    }
}
