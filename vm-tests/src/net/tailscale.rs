//! NET-5: traffic arriving on `tailscale0` is accepted — and only there.
//!
//! Tailscale cannot log in here, so the test makes its own `tailscale0`: a
//! second virtio NIC, hot-plugged after boot into the root port that
//! [`TestNet::qemu_args`] adds, on a second bridge where the peer has a leg
//! (10.78.0.99/24). Before the plug, two runtime files (in `/run`, gone at
//! the next boot) make udev name the NIC `tailscale0` and keep
//! systemd-networkd off it; the test then gives it 10.78.0.2/24. If the
//! image has a real `tailscale0` (tailscaled running), tailscaled is
//! stopped for the test and started again after.
//!
//! The proof ([`prove_tailscale_allow`]): one listener bound to
//! `0.0.0.0:9999` in the guest (`systemd-socket-activate`, from the image's
//! systemd, answering `ok`) must be reachable from the peer through
//! `tailscale0` and must not be reachable through the external interface.
//! Same socket, two paths, two outcomes: the firewall's allow is bound to
//! the interface, and it works.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::{Probe, TS_DEVICE_ID, TS_GUEST_IP, TS_MAC, TS_NETDEV_ID, TS_ROOT_PORT, TestNet};
use crate::machine::Machine;

/// The runtime udev link file naming the NIC `tailscale0`.
pub const LINK_FILE: &str = "/run/systemd/network/00-vmtest-tailscale0.link";
/// The runtime networkd file keeping networkd off the NIC.
pub const NETWORK_FILE: &str = "/run/systemd/network/00-vmtest-tailscale0.network";
/// The transient unit of the test listener.
pub const LISTENER_UNIT: &str = "vmtest-listener";
/// The test listener's port.
pub const LISTENER_PORT: u16 = 9999;
/// What the test listener answers.
pub const LISTENER_REPLY: &str = "ok";

/// The hot-plugged `tailscale0`, to give back to [`TestNet::detach_tailscale_link`].
#[derive(Debug)]
#[must_use = "detach the link when done"]
pub struct TailscaleLink {
    /// tailscaled was running (and owned `tailscale0`): start it again.
    restart_tailscaled: bool,
}

/// The guest shell script that prepares the runtime udev/networkd files.
pub fn prepare_script() -> String {
    format!(
        "mkdir -p /run/systemd/network\n\
         printf '%s\\n' '[Match]' 'MACAddress={TS_MAC}' '[Link]' 'Name=tailscale0' > {LINK_FILE}\n\
         printf '%s\\n' '[Match]' 'MACAddress={TS_MAC}' '[Link]' 'Unmanaged=yes' > {NETWORK_FILE}\n\
         udevadm control --reload\n\
         networkctl reload\n"
    )
}

impl TestNet {
    /// Hot-plugs the second NIC into the guest as `tailscale0` with
    /// [`TS_GUEST_IP`]/24 (see the module docs). Needs the machine booted
    /// with [`TestNet::qemu_args`].
    pub fn attach_tailscale_link(&self, machine: &mut Machine) -> Result<TailscaleLink> {
        let mut restart_tailscaled = false;
        if machine.execute("ip link show dev tailscale0")?.0 == 0 {
            let active = machine
                .execute("systemctl is-active --quiet tailscaled.service")?
                .0
                == 0;
            if !active {
                bail!("the guest already has a tailscale0 that tailscaled does not own");
            }
            machine.succeed("systemctl stop tailscaled.service")?;
            machine
                .wait_until_fails("ip link show dev tailscale0", Duration::from_secs(30))
                .context("tailscale0 did not go away with tailscaled")?;
            restart_tailscaled = true;
        }
        let link = TailscaleLink { restart_tailscaled };
        if let Err(e) = self.plug_tailscale_nic(machine) {
            // Leave the guest as it was (best effort); the plug error matters.
            let _ = self.detach_tailscale_link(machine, link);
            return Err(e);
        }
        Ok(link)
    }

    fn plug_tailscale_nic(&self, machine: &mut Machine) -> Result<()> {
        machine.succeed(&prepare_script())?;
        machine
            .qmp(
                "netdev_add",
                Some(json!({
                    "type": "tap", "id": TS_NETDEV_ID, "ifname": self.ts_tap(),
                    "script": "no", "downscript": "no",
                })),
            )
            .context("QMP netdev_add for the tailscale0 NIC")?;
        machine
            .qmp(
                "device_add",
                Some(json!({
                    "driver": "virtio-net-pci", "id": TS_DEVICE_ID, "netdev": TS_NETDEV_ID,
                    "mac": TS_MAC, "bus": TS_ROOT_PORT,
                })),
            )
            .context(
                "QMP device_add for the tailscale0 NIC (is the root port in the QEMU args?)",
            )?;
        machine
            .wait_until_succeeds(
                &format!("grep -qix '{TS_MAC}' /sys/class/net/tailscale0/address"),
                Duration::from_secs(90),
            )
            .context("the hot-plugged NIC did not appear as tailscale0")?;
        machine.succeed(&format!(
            "ip addr add {TS_GUEST_IP}/24 dev tailscale0\nip link set dev tailscale0 up"
        ))?;
        machine
            .wait_until_succeeds(
                &format!(
                    "ip -4 -o addr show dev tailscale0 | grep -qF ' {TS_GUEST_IP}/24 ' && \
                     grep -qx up /sys/class/net/tailscale0/operstate"
                ),
                Duration::from_secs(30),
            )
            .context("tailscale0 did not come up with its address")?;
        Ok(())
    }

    /// Undoes [`TestNet::attach_tailscale_link`]: unplugs the NIC, removes
    /// the runtime files, starts tailscaled again if it was stopped. Every
    /// step is tried; the error lists the ones that failed.
    pub fn detach_tailscale_link(&self, machine: &mut Machine, link: TailscaleLink) -> Result<()> {
        let mut problems: Vec<String> = Vec::new();
        let mut note = |what: &str, r: Result<()>| {
            if let Err(e) = r {
                problems.push(format!("{what}: {e:#}"));
            }
        };
        let r = machine
            .run("ip link set dev tailscale0 down 2>/dev/null || true")
            .map(drop);
        note("taking tailscale0 down", r);
        let r = unplug(machine);
        note("unplugging the NIC", r);
        let r = machine
            .qmp("netdev_del", Some(json!({ "id": TS_NETDEV_ID })))
            .map(drop)
            .or_else(|e| {
                if format!("{e:#}").contains("not found") {
                    Ok(())
                } else {
                    Err(e)
                }
            });
        note("QMP netdev_del", r);
        let r = machine
            .succeed(&format!(
                "rm -f {LINK_FILE} {NETWORK_FILE}\nudevadm control --reload\nnetworkctl reload"
            ))
            .map(drop);
        note("removing the runtime udev/networkd files", r);
        if link.restart_tailscaled {
            let r = machine
                .succeed("systemctl start tailscaled.service")
                .map(drop);
            note("starting tailscaled again", r);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            bail!("{}", problems.join("; "))
        }
    }
}

/// `device_del` of the NIC, then waits until QEMU dropped it (the guest
/// acknowledges the unplug; pciehp takes about 5 s). Absent: nothing to do.
fn unplug(machine: &mut Machine) -> Result<()> {
    if let Err(e) = machine.qmp("device_del", Some(json!({ "id": TS_DEVICE_ID }))) {
        if format!("{e:#}").contains("not found") {
            return Ok(());
        }
        return Err(e).context("QMP device_del");
    }
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let devices = machine.qmp("qom-list", Some(json!({ "path": "/machine/peripheral" })))?;
        let present = devices
            .as_array()
            .is_some_and(|a| a.iter().any(|d| d["name"] == TS_DEVICE_ID));
        if !present {
            return Ok(());
        }
        if Instant::now() >= end {
            bail!("the guest did not release the NIC within 60 s");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// What NET-5 saw.
#[derive(Debug, Clone)]
pub struct TailscaleProof {
    /// The guest's external address.
    pub external_ip: Ipv4Addr,
    /// The peer's connect to [`TS_GUEST_IP`]:[`LISTENER_PORT`] (via tailscale0).
    pub via_tailscale: Probe,
    /// What the listener sent over that connection.
    pub reply: String,
    /// The peer's connect to the external address, same port, same listener.
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
            "listener 0.0.0.0:{LISTENER_PORT} in the guest; from the peer: via tailscale0 \
             {TS_GUEST_IP}:{LISTENER_PORT} {} (reply {:?}); via the external interface {}:{LISTENER_PORT} {}",
            self.via_tailscale, self.reply, self.external_ip, self.via_external
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

/// Proves NET-5 on a booted machine (first boot done, networking up); see
/// the module docs. Leaves the guest as it found it (best effort; cleanup
/// problems are listed in the proof).
pub fn prove_tailscale_allow(machine: &mut Machine, net: &TestNet) -> Result<TailscaleProof> {
    let external_ip = net.guest_ip(Duration::from_secs(120))?;
    let link = net.attach_tailscale_link(machine)?;
    let probes = listen_and_probe(machine, net, external_ip);
    let mut cleanup = Vec::new();
    // `--collect`: the stopped unit is unloaded, failed or not.
    if let Err(e) = machine.succeed(&format!(
        "systemctl stop {LISTENER_UNIT}.service 2>/dev/null || true\n! systemctl is-active --quiet {LISTENER_UNIT}.service"
    )) {
        cleanup.push(format!("stopping the listener: {e:#}"));
    }
    if let Err(e) = net.detach_tailscale_link(machine, link) {
        cleanup.push(format!("detaching tailscale0: {e:#}"));
    }
    let (via_tailscale, reply, via_external) = probes?;
    Ok(TailscaleProof {
        external_ip,
        via_tailscale,
        reply,
        via_external,
        cleanup,
    })
}

fn listen_and_probe(
    machine: &mut Machine,
    net: &TestNet,
    external_ip: Ipv4Addr,
) -> Result<(Probe, String, Probe)> {
    machine.succeed(&format!(
        "systemd-run --unit={LISTENER_UNIT} --collect --quiet -- \
         systemd-socket-activate --listen=0.0.0.0:{LISTENER_PORT} --accept --inetd /bin/echo {LISTENER_REPLY}"
    ))?;
    machine.wait_for_open_port(LISTENER_PORT, Duration::from_secs(60))?;
    let timeout = Duration::from_secs(5);
    let (via_tailscale, bytes) =
        net.peer_tcp_read(IpAddr::V4(TS_GUEST_IP), LISTENER_PORT, timeout)?;
    let via_external = net.peer_tcp(IpAddr::V4(external_ip), LISTENER_PORT, timeout)?;
    Ok((
        via_tailscale,
        String::from_utf8_lossy(&bytes).into_owned(),
        via_external,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proof(ts: Probe, reply: &str, ext: Probe) -> TailscaleProof {
        TailscaleProof {
            external_ip: Ipv4Addr::new(10, 77, 0, 10),
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
        // The allow does not work.
        assert!(!proof(Probe::Filtered, "", Probe::Filtered).passed());
        assert!(!proof(Probe::Open, "", Probe::Filtered).passed());
    }

    #[test]
    fn prepare_script_writes_both_files() {
        let s = prepare_script();
        assert!(s.contains(LINK_FILE) && s.contains(NETWORK_FILE));
        assert!(s.contains(&format!("'MACAddress={TS_MAC}'")));
        assert!(s.contains("'Name=tailscale0'") && s.contains("'Unmanaged=yes'"));
    }
}
