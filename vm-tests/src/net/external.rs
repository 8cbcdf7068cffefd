//! NET-4: what a machine next to the appliance sees — a TCP and UDP scan
//! of the guest's external addresses (IPv4 from DHCP, IPv6 link-local, and
//! the static IPv6 address first boot takes from the metadata's
//! `network-config`, as on Hetzner) from the peer's namespace. An address
//! that could not be scanned fails the check.
//!
//! A scan that only finds silence proves nothing by itself: the guest may
//! be down, the address wrong, or the host may drop the traffic. So each
//! address family first gets a **positive control**: the guest connects
//! out (allowed by its firewall) to a listener in the peer's namespace,
//! and the peer must see that connection come from the very address it is
//! about to scan. Only then do "filtered" results mean the guest dropped
//! the probes.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::{
    GUEST_IP6, GUEST_MAC, PEER_IP, PEER_IP6, Probe, TestNet, UdpProbe, global_from_ip_addr,
    link_local_from_ip_addr,
};
use crate::machine::Machine;

/// Ports NET-4 names: SSH, HTTP(S), the gateway and its helpers.
pub const NAMED_TCP: &[u16] = &[22, 80, 443, 8080, 18789, 18791, 18793];
/// A sample of other commonly exposed TCP ports (Docker API, dev servers,
/// portmapper, LLMNR, Tailscale's port, …).
pub const SAMPLE_TCP: &[u16] = &[
    1, 25, 53, 111, 631, 2375, 2376, 3000, 5000, 5355, 8000, 8443, 9000, 9090, 41641,
];
/// UDP ports probed, each with a request its service would answer.
pub const SAMPLE_UDP: &[u16] = &[53, 68, 123, 161, 5353, 5355, 41641];
/// Tailscale's WireGuard port: the one UDP answer NET-4 tolerates, and only
/// when Tailscale is in the image.
pub const TAILSCALE_UDP: u16 = 41641;

/// What to scan and how fast.
#[derive(Debug, Clone)]
pub struct ScanPlan {
    /// TCP ports probed on IPv4 and IPv6.
    pub tcp: Vec<u16>,
    /// More TCP ports probed on IPv4 only (a full low range, say).
    pub tcp_v4_extra: Vec<u16>,
    /// UDP ports probed on IPv4 and IPv6.
    pub udp: Vec<u16>,
    /// Per-probe timeout (a dropped SYN or an unanswered datagram costs it).
    pub timeout: Duration,
    /// Parallel TCP probes.
    pub workers: usize,
    /// Also scan the guest's IPv6 addresses: link-local and global.
    pub ipv6: bool,
}

impl Default for ScanPlan {
    /// The named ports, the sample, all of 1–1024 on IPv4, the UDP sample;
    /// 2 s per probe, 128 in parallel, IPv6 included.
    fn default() -> Self {
        let mut tcp: Vec<u16> = NAMED_TCP.iter().chain(SAMPLE_TCP).copied().collect();
        tcp.sort_unstable();
        tcp.dedup();
        let tcp_v4_extra = (1..=1024).filter(|p| !tcp.contains(p)).collect();
        ScanPlan {
            tcp,
            tcp_v4_extra,
            udp: SAMPLE_UDP.to_vec(),
            timeout: Duration::from_secs(2),
            workers: 128,
            ipv6: true,
        }
    }
}

/// The positive control for one address family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// The guest's outgoing connection reached the peer from this address.
    Passed,
    /// It did not (why).
    Failed(String),
}

/// The scan results of one guest address.
#[derive(Debug, Clone)]
pub struct AddressScan {
    /// The scanned address.
    pub addr: IpAddr,
    /// The positive control.
    pub control: Control,
    /// TCP results, by port.
    pub tcp: Vec<(u16, Probe)>,
    /// UDP results, by port.
    pub udp: Vec<(u16, UdpProbe)>,
}

/// Everything NET-4 saw.
#[derive(Debug, Clone)]
pub struct ScanReport {
    /// Per address (IPv4 first).
    pub addresses: Vec<AddressScan>,
    /// Why the IPv6 scan did not run, if it did not.
    pub ipv6_skipped: Option<String>,
    /// How long the whole scan took.
    pub elapsed: Duration,
    /// Whether a UDP answer on [`TAILSCALE_UDP`] is tolerated.
    pub tailscale: bool,
}

impl ScanReport {
    /// `addr:port` of every open TCP port.
    pub fn open_tcp(&self) -> Vec<String> {
        self.addresses
            .iter()
            .flat_map(|a| {
                a.tcp
                    .iter()
                    .filter(|(_, p)| *p == Probe::Open)
                    .map(move |(port, _)| sockaddr(a.addr, *port))
            })
            .collect()
    }

    /// `addr:port` of every UDP port that answered (and is not tolerated).
    pub fn answered_udp(&self) -> Vec<String> {
        self.addresses
            .iter()
            .flat_map(|a| {
                a.udp
                    .iter()
                    .filter(|(port, p)| {
                        matches!(p, UdpProbe::Answered(_))
                            && !(self.tailscale && *port == TAILSCALE_UDP)
                    })
                    .map(move |(port, _)| sockaddr(a.addr, *port))
            })
            .collect()
    }

    /// Failed controls, as text.
    pub fn failed_controls(&self) -> Vec<String> {
        self.addresses
            .iter()
            .filter_map(|a| match &a.control {
                Control::Passed => None,
                Control::Failed(why) => Some(format!("{}: {why}", a.addr)),
            })
            .collect()
    }

    /// Every control passed, nothing open, no UDP answer, and no address
    /// of the plan left unscanned (a skipped IPv6 scan fails).
    pub fn passed(&self) -> bool {
        !self.addresses.is_empty()
            && self.ipv6_skipped.is_none()
            && self.failed_controls().is_empty()
            && self.open_tcp().is_empty()
            && self.answered_udp().is_empty()
    }

    /// The report text: verdict first, then per address and protocol what
    /// each port showed (named ports one by one, the rest as ranges).
    pub fn detail(&self) -> String {
        let mut lines = Vec::new();
        let open = self.open_tcp();
        let answered = self.answered_udp();
        let controls = self.failed_controls();
        if !open.is_empty() {
            lines.push(format!("OPEN TCP: {}", open.join(", ")));
        }
        if !answered.is_empty() {
            lines.push(format!("UDP ANSWERED: {}", answered.join(", ")));
        }
        if !controls.is_empty() {
            lines.push(format!(
                "positive control failed (the peer cannot tell closed from unreachable): {}",
                controls.join("; ")
            ));
        }
        lines.push(format!(
            "scanned from the peer {PEER_IP} (own network namespace on the guest's bridge) in {:.1}s",
            self.elapsed.as_secs_f64()
        ));
        for a in &self.addresses {
            let control = match &a.control {
                Control::Passed => "guest→peer control ok".to_string(),
                Control::Failed(w) => format!("control FAILED: {w}"),
            };
            lines.push(format!("{} ({control}):", a.addr));
            let named: Vec<String> = a
                .tcp
                .iter()
                .filter(|(p, _)| NAMED_TCP.contains(p))
                .map(|(p, r)| format!("{p} {r}"))
                .collect();
            lines.push(format!("  TCP named: {}", named.join(", ")));
            lines.push(format!(
                "  TCP all {} probed: {}",
                a.tcp.len(),
                summarize(&a.tcp)
            ));
            let udp: Vec<String> = a.udp.iter().map(|(p, r)| format!("{p} {r}")).collect();
            lines.push(format!("  UDP: {}", udp.join(", ")));
        }
        if let Some(why) = &self.ipv6_skipped {
            lines.push(format!("IPv6 not scanned: {why}"));
        }
        lines.join("\n")
    }
}

fn sockaddr(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// Groups results by outcome, with ports as compact ranges:
/// `filtered 1-21,23-79 (98); closed 22 (1)`.
pub fn summarize<T: Ord + Copy + std::fmt::Display>(results: &[(u16, T)]) -> String {
    let mut by: BTreeMap<T, Vec<u16>> = BTreeMap::new();
    for (port, r) in results {
        by.entry(*r).or_default().push(*port);
    }
    by.into_iter()
        .map(|(r, mut ports)| {
            ports.sort_unstable();
            format!("{r} {} ({})", ranges(&ports), ports.len())
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `1-3,5,7-8` for sorted `[1,2,3,5,7,8]`.
pub fn ranges(sorted: &[u16]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end.saturating_add(1) {
            i += 1;
            end = sorted[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(",")
}

/// The guest's interface with MAC `mac` (by `/sys/class/net/*/address`).
pub fn guest_ifname(machine: &mut Machine, mac: &str) -> Result<String> {
    let out = machine
        .succeed(&format!(
            "grep -lix '{mac}' /sys/class/net/*/address | head -n1 | cut -d/ -f5"
        ))
        .with_context(|| format!("finding the guest's interface with MAC {mac}"))?;
    Ok(out.trim().to_string())
}

/// Runs the NET-4 scan of `plan` against the guest on `net`.
/// `tailscale`: tolerate an answer on UDP 41641 (Tailscale in the image).
pub fn scan_external(
    machine: &mut Machine,
    net: &TestNet,
    plan: &ScanPlan,
    tailscale: bool,
) -> Result<ScanReport> {
    let start = Instant::now();
    let v4 = net.guest_ip(Duration::from_secs(120))?;
    let ifname = guest_ifname(machine, GUEST_MAC)?;
    let listener = net.peer_listen(0)?;
    let mut addresses = Vec::new();

    let control4 = control(machine, &listener, IpAddr::V4(v4), &format!("{PEER_IP}"))?;
    let mut tcp4_ports = plan.tcp.clone();
    tcp4_ports.extend(&plan.tcp_v4_extra);
    addresses.push(scan_address(
        net,
        plan,
        IpAddr::V4(v4),
        &tcp4_ports,
        control4,
    )?);

    let mut ipv6_skipped = None;
    if plan.ipv6 {
        let guest6 = machine
            .succeed(&format!("ip -6 -o addr show dev {ifname} scope link"))
            .map(|t| link_local_from_ip_addr(&t));
        match (guest6, net.peer_link_local()) {
            (Ok(Some(g6)), Ok(p6)) => {
                let c6 = control(
                    machine,
                    &listener,
                    IpAddr::V6(g6),
                    &format!("{p6}%{ifname}"),
                )?;
                addresses.push(scan_address(net, plan, IpAddr::V6(g6), &plan.tcp, c6)?);
            }
            (Ok(None), _) => {
                ipv6_skipped = Some(format!(
                    "the guest has no IPv6 link-local address on {ifname}"
                ))
            }
            (Err(e), _) => ipv6_skipped = Some(format!("reading the guest's IPv6 address: {e:#}")),
            (_, Err(e)) => ipv6_skipped = Some(format!("{e:#}")),
        }
        // The routable address, as a Hetzner server has one: first boot
        // configures it from the metadata's network-config.
        let global = machine
            .wait_until_succeeds(
                // Not while duplicate address detection still runs.
                &format!(
                    "ip -6 -o addr show dev {ifname} scope global | grep inet6 | grep -v tentative"
                ),
                Duration::from_secs(60),
            )
            .map(|t| global_from_ip_addr(&t));
        match global {
            Ok(Some(g6)) => {
                let c6 = control(machine, &listener, IpAddr::V6(g6), &format!("{PEER_IP6}"))?;
                addresses.push(scan_address(net, plan, IpAddr::V6(g6), &plan.tcp, c6)?);
            }
            Ok(None) | Err(_) => {
                let why = format!(
                    "the guest has no global IPv6 address on {ifname} (first boot should have \
                     configured {GUEST_IP6} from the metadata's network-config)"
                );
                ipv6_skipped = Some(match ipv6_skipped {
                    Some(earlier) => format!("{earlier}; {why}"),
                    None => why,
                });
            }
        }
    }
    Ok(ScanReport {
        addresses,
        ipv6_skipped,
        elapsed: start.elapsed(),
        tailscale,
    })
}

/// The guest connects out to the peer's listener at `peer_host`; passes
/// when the peer sees a connection from `guest`.
fn control(
    machine: &mut Machine,
    listener: &super::PeerListener,
    guest: IpAddr,
    peer_host: &str,
) -> Result<Control> {
    let port = listener.port();
    let out = machine.run(&format!(
        "timeout 20 bash -c 'exec 3<>/dev/tcp/{peer_host}/{port}; head -c 5 <&3'"
    ))?;
    if out.status != 0 {
        return Ok(Control::Failed(format!(
            "the guest could not connect out to {peer_host} port {port} (exit {}): {}",
            out.status,
            out.stderr_text().trim()
        )));
    }
    if listener.wait_for(guest, Duration::from_secs(5)) {
        Ok(Control::Passed)
    } else {
        Ok(Control::Failed(format!(
            "the peer saw connections from {:?}, not from {guest}",
            listener.connections()
        )))
    }
}

fn scan_address(
    net: &TestNet,
    plan: &ScanPlan,
    addr: IpAddr,
    tcp_ports: &[u16],
    control: Control,
) -> Result<AddressScan> {
    let tcp = net.peer_tcp_scan(addr, tcp_ports, plan.timeout, plan.workers)?;
    let udp = net.peer_udp_scan(addr, &plan.udp, plan.timeout, plan.workers)?;
    Ok(AddressScan {
        addr,
        control,
        tcp,
        udp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const EXAMPLE_GUEST: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 10);

    #[test]
    fn port_ranges() {
        assert_eq!(ranges(&[1, 2, 3, 5, 7, 8]), "1-3,5,7-8");
        assert_eq!(ranges(&[22]), "22");
        assert_eq!(ranges(&[]), "");
        assert_eq!(ranges(&[65534, 65535]), "65534-65535");
    }

    #[test]
    fn summaries_group_by_outcome() {
        let r = vec![
            (22, Probe::Closed),
            (1, Probe::Filtered),
            (2, Probe::Filtered),
            (80, Probe::Open),
        ];
        assert_eq!(
            summarize(&r),
            "open 80 (1); closed 22 (1); filtered 1-2 (2)"
        );
    }

    #[test]
    fn default_plan_covers_the_named_ports_and_low_range() {
        let plan = ScanPlan::default();
        for p in NAMED_TCP {
            assert!(plan.tcp.contains(p), "{p}");
        }
        let mut all: Vec<u16> = plan.tcp.iter().chain(&plan.tcp_v4_extra).copied().collect();
        all.sort_unstable();
        let n = all.len();
        all.dedup();
        assert_eq!(all.len(), n, "no port twice");
        assert!((1..=1024).all(|p| all.contains(&p)));
    }

    fn report(
        tcp: Vec<(u16, Probe)>,
        udp: Vec<(u16, UdpProbe)>,
        control: Control,
        tailscale: bool,
    ) -> ScanReport {
        ScanReport {
            addresses: vec![AddressScan {
                addr: IpAddr::V4(EXAMPLE_GUEST),
                control,
                tcp,
                udp,
            }],
            ipv6_skipped: None,
            elapsed: Duration::from_secs(3),
            tailscale,
        }
    }

    #[test]
    fn verdicts() {
        let quiet = report(
            vec![(22, Probe::Filtered), (80, Probe::Closed)],
            vec![(53, UdpProbe::NoAnswer), (123, UdpProbe::Unreachable)],
            Control::Passed,
            false,
        );
        assert!(quiet.passed(), "{}", quiet.detail());

        let open = report(vec![(18789, Probe::Open)], vec![], Control::Passed, false);
        assert!(!open.passed());
        assert!(
            open.detail().starts_with("OPEN TCP: 10.77.0.10:18789"),
            "{}",
            open.detail()
        );

        let udp = report(
            vec![],
            vec![(41641, UdpProbe::Answered(32))],
            Control::Passed,
            false,
        );
        assert!(!udp.passed());
        let udp_ts = report(
            vec![],
            vec![(41641, UdpProbe::Answered(32))],
            Control::Passed,
            true,
        );
        assert!(udp_ts.passed());

        let blind = report(
            vec![(22, Probe::Filtered)],
            vec![],
            Control::Failed("no route".into()),
            false,
        );
        assert!(!blind.passed());
        assert!(
            blind.detail().contains("positive control failed"),
            "{}",
            blind.detail()
        );

        let empty = ScanReport {
            addresses: vec![],
            ipv6_skipped: None,
            elapsed: Duration::ZERO,
            tailscale: false,
        };
        assert!(!empty.passed());

        let mut no_v6 = quiet.clone();
        no_v6.ipv6_skipped = Some("the guest has no global IPv6 address on eth0".into());
        assert!(!no_v6.passed(), "a skipped IPv6 scan fails");
        assert!(
            no_v6
                .detail()
                .contains("IPv6 not scanned: the guest has no global")
        );
    }
}
