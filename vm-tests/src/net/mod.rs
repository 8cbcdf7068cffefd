//! The test network: the guest's NIC joins a bridge through a tap; a DHCP
//! server, a default gateway and the Hetzner metadata endpoint live in an
//! "infrastructure" network namespace on that bridge; an external peer
//! lives in a second namespace, on the same bridge, and probes the guest
//! from outside (NET-4, NET-5, SEC-2, SEC-4, SEC-5).
//!
//! # What [`TestNet::create`] makes (as root), and why
//!
//! ```text
//!   QEMU ── tap <b>tp ─┐                               ┌─ veth <b>ia ── netns <b>i ("infrastructure")
//!   (NIC 0, GUEST_MAC) ├── bridge <b>br (no address) ─┤     lan0: 10.77.0.1/24 + 169.254.169.254/32
//!                      │                               │           + fd77:77::1/64 (the IPv6 gateway)
//!                      │                               │     dnsmasq (DHCP 10.77.0.10-50, router .1)
//!   QEMU ── tap <b>t2 ─┘                               │     metadata HTTP server on 169.254.169.254:80
//!   (a side machine,                                   └─ veth <b>pa ── netns <b>p ("peer")
//!    SIDE_MAC)                                               lan0: 10.77.0.99/24, fd77:77::99/64 (+ link-local)
//!                                                            the test tailnet (tailnet.rs)
//! ```
//!
//! `<b>` is `<prefix><pid in hex>-<sequence>`: unique per process and per
//! net, short enough for 15-byte interface names, and it lets a later run
//! remove what a killed run left behind ([`TestNet::create`] sweeps
//! objects whose pid is gone).
//!
//! - **The host has no address on either bridge.** The gateway (10.77.0.1)
//!   and the metadata address (169.254.169.254) sit in the infrastructure
//!   namespace, so the host's own firewall (INPUT) never sees the guest's
//!   traffic, the host's own route to a real metadata service (a CI runner
//!   on a cloud server has one) is not shadowed, the guest cannot reach the
//!   host, and several nets can exist at once with the same addresses. IPv6
//!   is disabled on every host-side device for the same reason.
//! - **IPv6** is a ULA /64 standing in for the /64 Hetzner routes to a
//!   server. As on Hetzner there are no router advertisements: the
//!   metadata's `network-config` ([`network_config_yaml`]) gives the guest
//!   its static address ([`GUEST_IP6`]) and gateway, which first boot
//!   configures; NET-4 scans that address as well as the link-local one.
//! - **The metadata service** is a Rust thread bound inside the
//!   infrastructure namespace (see [`metadata`]); the guest reaches it
//!   through its DHCP default route, as on Hetzner. Every request is
//!   recorded ([`TestNet::metadata_requests`]) so a test can prove that a
//!   second boot did not read user-data again (SEC-4).
//! - **The peer** stands for another machine on the VM's external network.
//!   Probes ([`TestNet::peer_tcp`], [`TestNet::peer_udp`],
//!   [`TestNet::peer_tcp_scan`]) run on threads that `setns(2)` into its
//!   namespace and use std sockets: nothing goes through QEMU port
//!   forwarding, nothing runs in the guest.
//! - **The test tailnet** ([`tailnet`]) runs in the peer's namespace: its
//!   control server, DERP and STUN on the peer's address, and the admin
//!   node that reaches the guest through the tailnet (NET-5, NET-8, SSH-3).
//! - **The side tap** puts a second machine of the run (SEC-2, SEC-4: the
//!   main one is paused meanwhile) on the same network with its own MAC
//!   ([`TestNet::side_qemu_args`]), so its first boot reaches the test
//!   tailnet too.
//! - **Host netfilter:** with `br_netfilter` active
//!   (`net.bridge.bridge-nf-call-iptables = 1`, the default once the module
//!   is loaded, e.g. by Docker), bridged frames traverse the host's
//!   iptables `FORWARD` chain, whose policy Docker sets to `DROP`. Rather
//!   than turning that sysctl off for the whole host (Docker relies on it),
//!   [`TestNet::create`] inserts `-i <bridge> -o <bridge> -j ACCEPT` at the
//!   top of `FORWARD` (iptables and ip6tables), tagged with a comment and
//!   removed on drop. A pure-nftables host firewall with a `forward` drop
//!   policy is not handled; NET-4's positive control (the guest connects
//!   out to the peer) reports such a blocked path instead of passing.
//!
//! - **No way out:** the infrastructure namespace does not forward (a new
//!   namespace starts with `ip_forward = 0`), so the guest has no Internet,
//!   as the appliance must cope with at first boot anyway (AGT-2).
//!
//! Everything is removed when the [`TestNet`] is dropped (and on every
//! error during creation): the dnsmasq process, the metadata thread, the
//! iptables rules, both namespaces (which takes their veth ends along), the
//! taps, the bridges and the temporary directory. Drop the `Machine`
//! first (declare the `TestNet` before it), so QEMU lets go of the taps.
//!
//! Use: one running QEMU per net (a tap has one user; a second machine at
//! the same time needs its own `TestNet`); a machine may be shut down and
//! booted again on the same net (SEC-4). dnsmasq gets `SIGKILL` when the
//! thread that created the net ends (`PR_SET_PDEATHSIG`, so a killed test
//! run leaves no DHCP server behind): create the net on a thread that
//! outlives it.
//!
//! Host requirements: root, `ip` (iproute2), `dnsmasq` (package
//! `dnsmasq-base`), `/dev/net/tun`, kernel bridge/veth/tun/netns support;
//! `iptables`/`ip6tables` only when `br_netfilter` is active.

pub mod dhcp;
pub mod external;
pub mod git_remote;
pub mod metadata;
pub mod probe;
pub mod tailnet;
pub mod tailscale;

use std::ffi::OsString;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tempfile::TempDir;

use crate::log::Log;
use hostutil::{SBIN_DIRS, die_with_parent, which};
pub use metadata::MetadataRequest;
use metadata::{Documents, MetadataServer};
pub use probe::{PeerListener, Probe, UdpProbe};

/// The external network: 10.77.0.0/24.
pub const LAN_PREFIX_LEN: u8 = 24;
/// The default gateway (in the infrastructure namespace).
pub const GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// The peer's address on the external network.
pub const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 99);
/// First address DHCP hands out.
pub const DHCP_FIRST: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 10);
/// Last address DHCP hands out.
pub const DHCP_LAST: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 50);
/// The metadata service's address (as on Hetzner).
pub const METADATA_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// The external network's IPv6 prefix length: a ULA /64 standing in for
/// the /64 Hetzner routes to each server (NET-4 scans a routable address,
/// not only the link-local one).
pub const LAN6_PREFIX_LEN: u8 = 64;
/// The IPv6 gateway (in the infrastructure namespace), named by the
/// metadata's `network-config`.
pub const GATEWAY_IP6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0x77, 0, 0, 0, 0, 0, 1);
/// The peer's IPv6 address on the external network.
pub const PEER_IP6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0x77, 0, 0, 0, 0, 0, 0x99);
/// The guest's static IPv6 address: first boot configures it from the
/// metadata's `network-config`, as on Hetzner (no router advertisements).
pub const GUEST_IP6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0x77, 0, 0, 0, 0, 0, 0x10);

/// The `network-config` section of the metadata, in the shape Hetzner
/// serves it (network config v1): the guest's NIC, by MAC, with DHCPv4 and
/// its static IPv6 address and gateway.
pub fn network_config_yaml() -> String {
    format!(
        "network-config:\n\
         \x20 config:\n\
         \x20 - mac_address: {GUEST_MAC}\n\
         \x20   name: eth0\n\
         \x20   subnets:\n\
         \x20   - ipv4: true\n\
         \x20     type: dhcp\n\
         \x20   - address: {GUEST_IP6}/{LAN6_PREFIX_LEN}\n\
         \x20     gateway: {GATEWAY_IP6}\n\
         \x20     ipv6: true\n\
         \x20     type: static\n\
         \x20   type: physical\n\
         \x20 version: 1\n"
    )
}

/// MAC address of the guest's external NIC.
pub const GUEST_MAC: &str = "52:54:00:77:00:10";
/// MAC address of a side machine's NIC (on the side tap).
pub const SIDE_MAC: &str = "52:54:00:77:00:20";
/// The peer's interface on the external network (inside its namespace).
pub const PEER_LAN_IF: &str = "lan0";

/// Longest name prefix: interface names have 15 bytes.
const MAX_PREFIX: usize = 4;

static SEQUENCE: AtomicU32 = AtomicU32::new(0);

/// Something to undo on drop, in reverse creation order.
#[derive(Debug)]
enum Undo {
    /// `ip link del`.
    Link(String),
    /// `ip netns del`.
    Netns(String),
    /// `<tool> -D <rule…>`.
    Rule {
        tool: &'static str,
        rule: Vec<String>,
    },
}

/// The harness's network for one machine; see the module docs.
#[derive(Debug)]
pub struct TestNet {
    log: Log,
    base: String,
    bridge: String,
    tap: String,
    side_tap: String,
    infra_ns: String,
    peer_ns: String,
    dir: TempDir,
    dnsmasq: Option<Child>,
    metadata: Option<MetadataServer>,
    undo: Vec<Undo>,
}

impl TestNet {
    /// Creates the bridges, taps, namespaces, the DHCP server and the
    /// metadata service (serving `userdata` and `metadata_yaml`), and the
    /// peer. `name_prefix`: 1 to 4 lower-case letters or digits (e.g.
    /// `vt`). Needs root. On error, everything made so far is removed.
    pub fn create(name_prefix: &str, userdata: Vec<u8>, metadata_yaml: String) -> Result<TestNet> {
        if name_prefix.is_empty()
            || name_prefix.len() > MAX_PREFIX
            || !name_prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            bail!(
                "invalid test network prefix {name_prefix:?}: 1 to {MAX_PREFIX} lower-case letters or digits"
            );
        }
        preflight()?;
        sweep_stale(name_prefix);
        let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed) % 256;
        let base = format!("{name_prefix}{:x}-{seq:x}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix("vmtest-net-")
            .tempdir()
            .context("creating the test network's temporary directory")?;
        let mut net = TestNet {
            log: Log::new(format!("net {base}")),
            bridge: format!("{base}br"),
            tap: format!("{base}tp"),
            side_tap: format!("{base}t2"),
            infra_ns: format!("{base}i"),
            peer_ns: format!("{base}p"),
            base,
            dir,
            dnsmasq: None,
            metadata: None,
            undo: Vec::new(),
        };
        let start = Instant::now();
        // On error `net` is dropped here, which undoes what was made.
        net.build(Documents {
            userdata: Some(userdata),
            metadata: Some(metadata_yaml),
        })?;
        net.log.info(format_args!(
            "test network up in {:.1}s: bridge {}, tap {}, namespaces {} (gateway, DHCP, metadata) and {} (peer)",
            start.elapsed().as_secs_f64(),
            net.bridge,
            net.tap,
            net.infra_ns,
            net.peer_ns
        ));
        Ok(net)
    }

    fn build(&mut self, docs: Documents) -> Result<()> {
        let (br, tap, side_tap) = (self.bridge.clone(), self.tap.clone(), self.side_tap.clone());
        let (infra, peer) = (self.infra_ns.clone(), self.peer_ns.clone());
        ip(&[
            "link",
            "add",
            &br,
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ])?;
        self.undo.push(Undo::Link(br.clone()));
        no_ipv6(&br);
        ip(&["link", "set", "dev", &br, "up"])?;
        for (bridge, tap) in [(&br, &tap), (&br, &side_tap)] {
            ip(&["tuntap", "add", "dev", tap, "mode", "tap"])?;
            self.undo.push(Undo::Link(tap.clone()));
            no_ipv6(tap);
            ip(&["link", "set", "dev", tap, "master", bridge])?;
            ip(&["link", "set", "dev", tap, "up"])?;
        }
        for ns in [&infra, &peer] {
            ip(&["netns", "add", ns])?;
            self.undo.push(Undo::Netns(ns.clone()));
            ip(&["-n", ns, "link", "set", "dev", "lo", "up"])?;
        }
        // veth pairs: host end on a bridge, other end in a namespace.
        let legs = [
            (format!("{}ia", self.base), &br, &infra, PEER_LAN_IF),
            (format!("{}pa", self.base), &br, &peer, PEER_LAN_IF),
        ];
        for (host_end, bridge, ns, inner) in &legs {
            ip(&[
                "link", "add", host_end, "type", "veth", "peer", "name", inner, "netns", ns,
            ])?;
            self.undo.push(Undo::Link(host_end.clone()));
            no_ipv6(host_end);
            ip(&["link", "set", "dev", host_end, "master", bridge])?;
            ip(&["link", "set", "dev", host_end, "up"])?;
            ip(&["-n", ns, "link", "set", "dev", inner, "up"])?;
        }
        let cidr = |a: Ipv4Addr| format!("{a}/{LAN_PREFIX_LEN}");
        ip(&[
            "-n",
            &infra,
            "addr",
            "add",
            &cidr(GATEWAY_IP),
            "dev",
            PEER_LAN_IF,
        ])?;
        ip(&[
            "-n",
            &infra,
            "addr",
            "add",
            &format!("{METADATA_IP}/32"),
            "dev",
            PEER_LAN_IF,
        ])?;
        ip(&[
            "-n",
            &peer,
            "addr",
            "add",
            &cidr(PEER_IP),
            "dev",
            PEER_LAN_IF,
        ])?;
        // IPv6 (ULA): no duplicate address detection, so the addresses
        // are usable at once.
        let cidr6 = |a: Ipv6Addr| format!("{a}/{LAN6_PREFIX_LEN}");
        for (ns, addr) in [(&infra, GATEWAY_IP6), (&peer, PEER_IP6)] {
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &cidr6(addr),
                "dev",
                PEER_LAN_IF,
                "nodad",
            ])?;
        }
        self.allow_bridged_traffic();
        self.metadata = Some(
            MetadataServer::start(
                &probe::netns_path(&infra),
                SocketAddr::new(IpAddr::V4(METADATA_IP), 80),
                docs,
            )
            .context("starting the metadata service")?,
        );
        self.start_dnsmasq()?;
        Ok(())
    }

    /// Inserts FORWARD accept rules for our bridges when the host passes
    /// bridged frames through iptables (see the module docs). Failures
    /// are logged, not fatal.
    fn allow_bridged_traffic(&mut self) {
        for (sysctl, tool) in [
            ("bridge-nf-call-iptables", "iptables"),
            ("bridge-nf-call-ip6tables", "ip6tables"),
        ] {
            let path = Path::new("/proc/sys/net/bridge").join(sysctl);
            let on = std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == "1");
            if !on {
                continue;
            }
            let bridge = self.bridge.clone();
            let rule: Vec<String> = [
                "FORWARD",
                "-i",
                &bridge,
                "-o",
                &bridge,
                "-m",
                "comment",
                "--comment",
                &format!("vm-tests {}", self.base),
                "-j",
                "ACCEPT",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let mut args: Vec<String> = vec!["-w".into(), "-I".into()];
            args.extend(rule.iter().take(1).cloned());
            args.push("1".into());
            args.extend(rule.iter().skip(1).cloned());
            match run(tool, &args) {
                Ok(_) => self.undo.push(Undo::Rule { tool, rule }),
                Err(e) => self.log.info(format_args!(
                    "warning: net.bridge.{sysctl} is 1 but the {tool} FORWARD accept rule for {bridge} \
                     could not be added ({e:#}); bridged traffic may be filtered by the host"
                )),
            }
        }
    }

    fn start_dnsmasq(&mut self) -> Result<()> {
        let lease_file = self.lease_file();
        let log_path = self.dir.path().join("dnsmasq.log");
        File::create(&lease_file).with_context(|| format!("creating {}", lease_file.display()))?;
        let log =
            File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let log2 = log.try_clone().context("cloning the dnsmasq log handle")?;
        let args = dhcp::dnsmasq_args(&dhcp::DhcpConfig {
            interface: PEER_LAN_IF,
            range: (DHCP_FIRST, DHCP_LAST),
            netmask: Ipv4Addr::new(255, 255, 255, 0),
            router: GATEWAY_IP,
            lease_file: &lease_file,
            reply_delay: dhcp::reply_delay_from_env()?,
        });
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.infra_ns, "dnsmasq"])
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .context("starting dnsmasq (package dnsmasq-base)")?;
        self.dnsmasq = Some(child);
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(child) = self.dnsmasq.as_mut()
                && let Some(status) = child.try_wait().context("checking on dnsmasq")?
            {
                self.dnsmasq = None;
                bail!(
                    "dnsmasq exited at start ({status}): {}",
                    std::fs::read_to_string(&log_path)
                        .unwrap_or_default()
                        .trim()
                );
            }
            let log_text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if log_text.contains(dhcp::READY_LINE) {
                return Ok(());
            }
            if Instant::now() >= end {
                bail!(
                    "dnsmasq did not report its DHCP server up within 10 s: {}",
                    log_text.trim()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// QEMU arguments for the guest's NIC on the external network (tap,
    /// virtio-net, [`GUEST_MAC`]). One QEMU at a time per tap: a tap takes
    /// one user.
    pub fn qemu_args(&self) -> Vec<OsString> {
        nic_args(&self.tap, GUEST_MAC)
    }

    /// QEMU arguments for a side machine's NIC on the same network (the
    /// side tap, [`SIDE_MAC`]): one side machine at a time.
    pub fn side_qemu_args(&self) -> Vec<OsString> {
        nic_args(&self.side_tap, SIDE_MAC)
    }

    /// The unique base of every name of this net (`vt1f2e-0`).
    pub fn base_name(&self) -> &str {
        &self.base
    }

    /// The tap QEMU's first NIC uses.
    pub fn tap(&self) -> &str {
        &self.tap
    }

    /// The peer's namespace name (for `ip netns exec`).
    pub fn peer_netns(&self) -> &str {
        &self.peer_ns
    }

    /// The infrastructure namespace name (gateway, DHCP, metadata).
    pub fn infra_netns(&self) -> &str {
        &self.infra_ns
    }

    fn peer_path(&self) -> PathBuf {
        probe::netns_path(&self.peer_ns)
    }

    fn lease_file(&self) -> PathBuf {
        self.dir.path().join("dnsmasq.leases")
    }

    /// dnsmasq's output so far (DHCP transactions, with `--log-dhcp`).
    pub fn dhcp_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dnsmasq.log")).unwrap_or_default()
    }

    /// The guest's IPv4 address on the external network, from dnsmasq's
    /// lease for [`GUEST_MAC`]; waits up to `timeout` for the lease.
    pub fn guest_ip(&self, timeout: Duration) -> Result<Ipv4Addr> {
        let end = Instant::now() + timeout;
        let path = self.lease_file();
        loop {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading the lease file {}", path.display()))?;
            if let Some(ip) = dhcp::lease_for(&text, GUEST_MAC) {
                return Ok(ip);
            }
            if Instant::now() >= end {
                bail!(
                    "no DHCP lease for {GUEST_MAC} after {:.0?}; dnsmasq log (tail):\n{}",
                    timeout,
                    crate::qemu::tail(&self.dhcp_log(), 15)
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Every request the metadata service received so far, in order.
    pub fn metadata_requests(&self) -> Vec<MetadataRequest> {
        self.metadata
            .as_ref()
            .and_then(|m| m.requests.lock().ok().map(|r| r.clone()))
            .unwrap_or_default()
    }

    /// How many requests for `/hetzner/v1/userdata` were received so far.
    pub fn userdata_requests(&self) -> usize {
        self.metadata_requests()
            .iter()
            .filter(|r| r.path == metadata::USERDATA_PATH)
            .count()
    }

    /// Replaces the user-data served (`None`: 404, as a server created
    /// without user-data).
    pub fn set_userdata(&self, userdata: Option<Vec<u8>>) -> Result<()> {
        self.docs(|d| d.userdata = userdata)
    }

    /// Replaces the metadata document served (`None`: 404).
    pub fn set_metadata(&self, metadata_yaml: Option<String>) -> Result<()> {
        self.docs(|d| d.metadata = metadata_yaml)
    }

    fn docs(&self, f: impl FnOnce(&mut Documents)) -> Result<()> {
        let server = self
            .metadata
            .as_ref()
            .ok_or_else(|| anyhow!("the metadata service is not running"))?;
        let mut docs = server
            .docs
            .lock()
            .map_err(|_| anyhow!("the metadata documents lock is poisoned"))?;
        f(&mut docs);
        Ok(())
    }

    /// One TCP connect from the peer to `addr:port` (a link-local IPv6
    /// address is scoped to the peer's external interface).
    pub fn peer_tcp(&self, addr: IpAddr, port: u16, timeout: Duration) -> Result<Probe> {
        probe::in_netns(&self.peer_path(), move || {
            let target = probe::socket_addr(addr, port, PEER_LAN_IF)?;
            Ok(probe::tcp_connect(target, timeout)?.0)
        })
        .with_context(|| format!("TCP probe of {addr} port {port} from the peer"))
    }

    /// A TCP connect from the peer that, when open, also reads what the
    /// server sends (up to 4 KiB, until it closes or `timeout`).
    pub fn peer_tcp_read(
        &self,
        addr: IpAddr,
        port: u16,
        timeout: Duration,
    ) -> Result<(Probe, Vec<u8>)> {
        probe::in_netns(&self.peer_path(), move || {
            let target = probe::socket_addr(addr, port, PEER_LAN_IF)?;
            probe::tcp_read(target, timeout, 4096)
        })
        .with_context(|| format!("TCP probe of {addr} port {port} from the peer"))
    }

    /// A UDP request from the peer to `addr:port` with a payload a real
    /// service there would answer ([`probe::udp_payload`]).
    pub fn peer_udp(&self, addr: IpAddr, port: u16, timeout: Duration) -> Result<UdpProbe> {
        self.peer_udp_with(addr, port, probe::udp_payload(port), timeout)
    }

    /// A UDP request from the peer with the given payload.
    pub fn peer_udp_with(
        &self,
        addr: IpAddr,
        port: u16,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<UdpProbe> {
        probe::in_netns(&self.peer_path(), move || {
            let target = probe::socket_addr(addr, port, PEER_LAN_IF)?;
            probe::udp_probe(target, &payload, timeout)
        })
        .with_context(|| format!("UDP probe of {addr} port {port} from the peer"))
    }

    /// TCP connects from the peer to every port of `ports`, `workers` at a
    /// time; results in the order of `ports`.
    pub fn peer_tcp_scan(
        &self,
        addr: IpAddr,
        ports: &[u16],
        timeout: Duration,
        workers: usize,
    ) -> Result<Vec<(u16, Probe)>> {
        probe::tcp_scan(
            &self.peer_path(),
            addr,
            PEER_LAN_IF,
            ports,
            timeout,
            workers,
        )
    }

    /// UDP requests from the peer to every port of `ports` (payloads of
    /// [`probe::udp_payload`]), `workers` at a time.
    pub fn peer_udp_scan(
        &self,
        addr: IpAddr,
        ports: &[u16],
        timeout: Duration,
        workers: usize,
    ) -> Result<Vec<(u16, UdpProbe)>> {
        probe::udp_scan(
            &self.peer_path(),
            addr,
            PEER_LAN_IF,
            ports,
            timeout,
            workers,
        )
    }

    /// A TCP listener in the peer's namespace on all its addresses (port 0:
    /// any free port), for connections the guest makes out.
    pub fn peer_listen(&self, port: u16) -> Result<PeerListener> {
        PeerListener::start(&self.peer_path(), port)
    }

    /// Runs `argv` in the peer's namespace (`ip netns exec`) and returns
    /// its output, whatever the exit status.
    pub fn peer_run(&self, argv: &[&str]) -> Result<Output> {
        let Some((program, _)) = argv.split_first() else {
            bail!("peer_run: empty argv");
        };
        Command::new("ip")
            .args(["netns", "exec", &self.peer_ns])
            .args(argv)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {program} in the peer's namespace {}", self.peer_ns))
    }

    /// The peer's IPv6 link-local address on the external network.
    pub fn peer_link_local(&self) -> Result<Ipv6Addr> {
        let out = run(
            "ip",
            &[
                "-n",
                &self.peer_ns,
                "-6",
                "-o",
                "addr",
                "show",
                "dev",
                PEER_LAN_IF,
                "scope",
                "link",
            ]
            .map(String::from),
        )?;
        link_local_from_ip_addr(&out)
            .ok_or_else(|| anyhow!("the peer has no IPv6 link-local address yet: {out:?}"))
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        self.metadata = None;
        if let Some(mut child) = self.dnsmasq.take() {
            stop_child(&mut child);
        }
        while let Some(undo) = self.undo.pop() {
            let result = match &undo {
                Undo::Link(name) => ip(&["link", "del", "dev", name]),
                Undo::Netns(name) => ip(&["netns", "del", name]),
                Undo::Rule { tool, rule } => {
                    let mut args = vec!["-w".to_string(), "-D".to_string()];
                    args.extend(rule.iter().cloned());
                    run(tool, &args).map(drop)
                }
            };
            if let Err(e) = result {
                // A veth end goes away with its namespace: not an error.
                let gone = matches!(undo, Undo::Link(_))
                    && format!("{e:#}").contains("Cannot find device");
                if !gone {
                    self.log
                        .info(format_args!("cleanup: {undo:?} failed: {e:#}"));
                }
            }
        }
    }
}

/// QEMU arguments: one virtio NIC with `mac` on `tap`.
fn nic_args(tap: &str, mac: &str) -> Vec<OsString> {
    [
        "-netdev".to_string(),
        format!("tap,id=vtn0,ifname={tap},script=no,downscript=no"),
        "-device".to_string(),
        format!("virtio-net-pci,netdev=vtn0,mac={mac}"),
    ]
    .into_iter()
    .map(OsString::from)
    .collect()
}

/// Root, `ip` and `dnsmasq` present, `/dev/net/tun` present.
fn preflight() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the test network needs root (bridges, taps, network namespaces)");
    }
    for (tool, package) in [("ip", "iproute2"), ("dnsmasq", "dnsmasq-base")] {
        if which(tool, SBIN_DIRS).is_none() {
            bail!("`{tool}` not found: install the Debian package {package}");
        }
    }
    if !Path::new("/dev/net/tun").exists() {
        bail!("/dev/net/tun is missing: the kernel's tun driver is needed for QEMU's tap");
    }
    Ok(())
}

/// Runs `ip` with `args`; an error quotes its stderr.
fn ip(args: &[&str]) -> Result<()> {
    run(
        "ip",
        &args.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    )
    .map(drop)
}

/// Runs a host tool; its stdout, or an error with the command and stderr.
fn run(tool: &str, args: &[String]) -> Result<String> {
    run_command(Command::new(tool).args(args))
}

/// Runs `cmd` with stdin from `/dev/null`; its stdout, or an error with the
/// command and its stderr.
pub(crate) fn run_command(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Turns IPv6 off on a host-side device (best effort): the host must not
/// be reachable from the guest's networks.
fn no_ipv6(dev: &str) {
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6"), "1");
}

/// Stops a child of ours: SIGTERM, up to 3 s to exit, then SIGKILL; reaped.
pub(crate) fn stop_child(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) on the pid of our own child, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let end = Instant::now() + Duration::from_secs(3);
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Every `inet6` address in `ip -o addr` output, in order.
fn inet6_addrs(text: &str) -> Vec<Ipv6Addr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        for pair in words.windows(2) {
            if pair[0] == "inet6"
                && let Some(Ok(addr)) = pair[1].split('/').next().map(str::parse::<Ipv6Addr>)
            {
                out.push(addr);
            }
        }
    }
    out
}

/// The first IPv6 address in `ip -6 -o addr` output that is neither
/// link-local nor loopback.
pub fn global_from_ip_addr(text: &str) -> Option<Ipv6Addr> {
    inet6_addrs(text)
        .into_iter()
        .find(|a| !probe::is_link_local(a) && !a.is_loopback())
}

/// The first `inet6 fe80::…` address in `ip -o addr` output.
pub fn link_local_from_ip_addr(text: &str) -> Option<Ipv6Addr> {
    inet6_addrs(text).into_iter().find(probe::is_link_local)
}

/// The pid a name of ours carries (`<prefix><pid hex>-<seq>…`), if `name`
/// is one of ours.
fn owner_pid(name: &str, prefix: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    let (pid, _) = rest.split_once('-')?;
    if pid.is_empty() || !pid.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(pid, 16).ok()
}

/// Removes namespaces, links and iptables rules that a killed run with
/// the same prefix left behind (their pid no longer exists). Best effort.
fn sweep_stale(prefix: &str) {
    let dead = |name: &str| {
        owner_pid(name, prefix).is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    };
    if let Ok(list) = run("ip", &["netns".into(), "list".into()]) {
        for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if dead(name) {
                let _ = ip(&["netns", "del", name]);
            }
        }
    }
    if let Ok(list) = run("ip", &["-o".into(), "link".into(), "show".into()]) {
        for name in list.lines().filter_map(link_name) {
            if dead(&name) {
                let _ = ip(&["link", "del", "dev", &name]);
            }
        }
    }
    for tool in ["iptables", "ip6tables"] {
        if which(tool, SBIN_DIRS).is_none() {
            continue;
        }
        let Ok(rules) = run(tool, &["-w".into(), "-S".into(), "FORWARD".into()]) else {
            continue;
        };
        for line in rules.lines() {
            let words = split_rule(line);
            let stale = words
                .windows(2)
                .any(|w| w[0] == "--comment" && w[1].strip_prefix("vm-tests ").is_some_and(dead));
            if stale && words.first().map(String::as_str) == Some("-A") {
                let mut args = vec!["-w".to_string(), "-D".to_string()];
                args.extend(words.into_iter().skip(1));
                let _ = run(tool, &args);
            }
        }
    }
}

/// The interface name of an `ip -o link show` line (`3: name@peer: <…>`).
fn link_name(line: &str) -> Option<String> {
    let (_, rest) = line.split_once(": ")?;
    let (name, _) = rest.split_once(": ")?;
    Some(name.split('@').next().unwrap_or(name).to_string())
}

/// Splits an `iptables -S` line into words (double quotes group).
fn split_rule(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut in_word = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_owner_pid() {
        assert_eq!(owner_pid("vt1f2e-0br", "vt"), Some(0x1f2e));
        assert_eq!(owner_pid("vt1f2e-ffp", "vt"), Some(0x1f2e));
        assert_eq!(owner_pid("vti0", "vt"), None);
        assert_eq!(owner_pid("vtx-0", "vt"), None);
        assert_eq!(owner_pid("eth0", "vt"), None);
        assert_eq!(owner_pid("vt-0", "vt"), None);
    }

    #[test]
    fn longest_names_fit_in_ifnamsiz() {
        let base = format!("{}{:x}-{:x}", "abcd", 4_194_304u32, 255);
        for suffix in ["br", "tp", "t2", "ia", "pa"] {
            assert!(format!("{base}{suffix}").len() <= 15, "{base}{suffix}");
        }
    }

    #[test]
    fn link_names_from_ip_output() {
        assert_eq!(
            link_name("1: lo: <LOOPBACK,UP> mtu 65536"),
            Some("lo".into())
        );
        assert_eq!(
            link_name("7: vt1f-0ia@if6: <BROADCAST,MULTICAST> mtu 1500 master vt1f-0br"),
            Some("vt1f-0ia".into())
        );
        assert_eq!(link_name("garbage"), None);
    }

    #[test]
    fn iptables_rules_split_with_quotes() {
        assert_eq!(
            split_rule(
                "-A FORWARD -i vt1-0br -o vt1-0br -m comment --comment \"vm-tests vt1-0\" -j ACCEPT"
            ),
            vec![
                "-A",
                "FORWARD",
                "-i",
                "vt1-0br",
                "-o",
                "vt1-0br",
                "-m",
                "comment",
                "--comment",
                "vm-tests vt1-0",
                "-j",
                "ACCEPT"
            ]
        );
    }

    #[test]
    fn link_local_parsing() {
        let text = "2: lan0    inet6 fe80::a8bb:ccff:fedd:eeff/64 scope link \\       valid_lft forever preferred_lft forever\n";
        assert_eq!(
            link_local_from_ip_addr(text),
            Some("fe80::a8bb:ccff:fedd:eeff".parse().unwrap())
        );
        assert_eq!(
            link_local_from_ip_addr("2: lan0    inet6 2001:db8::1/64 scope global"),
            None
        );
        assert_eq!(link_local_from_ip_addr(""), None);
        let both = "2: eth0    inet6 fd77:77::10/64 scope global \\ valid_lft forever\n\
                    2: eth0    inet6 fe80::5054:ff:fe77:10/64 scope link \\ valid_lft forever\n";
        assert_eq!(global_from_ip_addr(both), Some(GUEST_IP6));
        assert_eq!(
            link_local_from_ip_addr(both),
            Some("fe80::5054:ff:fe77:10".parse().unwrap())
        );
        assert_eq!(global_from_ip_addr(text), None);
        assert_eq!(
            global_from_ip_addr("1: lo    inet6 ::1/128 scope host"),
            None
        );
    }

    #[test]
    fn the_network_config_is_what_first_boot_reads() {
        let yaml = network_config_yaml();
        assert!(
            yaml.starts_with("network-config:\n  config:\n  - mac_address: 52:54:00:77:00:10\n")
        );
        assert!(yaml.contains("    - address: fd77:77::10/64\n      gateway: fd77:77::1\n      ipv6: true\n      type: static\n"), "{yaml}");
    }

    #[test]
    fn qemu_args_name_the_tap_and_mac() {
        let args: Vec<String> = nic_args("vt1-0tp", GUEST_MAC)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "-netdev",
                "tap,id=vtn0,ifname=vt1-0tp,script=no,downscript=no",
                "-device",
                "virtio-net-pci,netdev=vtn0,mac=52:54:00:77:00:10",
            ]
        );
        assert_ne!(GUEST_MAC, SIDE_MAC);
    }
}
