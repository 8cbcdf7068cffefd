//! Probes that run inside a network namespace (the external peer): TCP
//! connects, UDP request/answer, a TCP listener, and a parallel TCP scan.
//!
//! A thread enters the namespace with `setns(2)` (`CLONE_NEWNET` only
//! affects the calling thread) and then uses plain std sockets, which are
//! created in the namespace the thread is in. Such a thread is used once
//! and ends; it never goes back to the host's namespace.

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};

/// What a TCP connect from the peer saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Probe {
    /// The handshake completed: something accepts connections there.
    Open,
    /// Refused (a TCP RST came back): reachable, nothing listens.
    Closed,
    /// No answer within the timeout (a firewall dropped the SYN).
    Filtered,
    /// An ICMP error said the host or network is unreachable or the
    /// traffic is prohibited (a `REJECT` rule, or no ARP answer).
    Unreachable,
}

impl Probe {
    /// Short lower-case label (`open`, `closed`, `filtered`, `unreachable`).
    pub fn label(self) -> &'static str {
        match self {
            Probe::Open => "open",
            Probe::Closed => "closed",
            Probe::Filtered => "filtered",
            Probe::Unreachable => "unreachable",
        }
    }

    /// Classifies the result of a TCP connect.
    pub fn from_connect(result: &io::Result<TcpStream>) -> Result<Probe> {
        match result {
            Ok(_) => Ok(Probe::Open),
            Err(e) => match e.kind() {
                io::ErrorKind::ConnectionRefused => Ok(Probe::Closed),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Ok(Probe::Filtered),
                io::ErrorKind::HostUnreachable
                | io::ErrorKind::NetworkUnreachable
                | io::ErrorKind::PermissionDenied => Ok(Probe::Unreachable),
                _ => match e.raw_os_error() {
                    Some(libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EACCES | libc::EPERM) => {
                        Ok(Probe::Unreachable)
                    }
                    _ => Err(anyhow!("TCP connect failed unexpectedly: {e}")),
                },
            },
        }
    }
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// What a UDP request from the peer got back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UdpProbe {
    /// A datagram came back (its length).
    Answered(usize),
    /// Nothing came back within the timeout.
    NoAnswer,
    /// An ICMP port (or host) unreachable came back: nothing listens, and
    /// no firewall dropped the request.
    Unreachable,
}

impl UdpProbe {
    /// Short label (`answered (N bytes)`, `no answer`, `unreachable`).
    pub fn label(self) -> String {
        match self {
            UdpProbe::Answered(n) => format!("answered ({n} bytes)"),
            UdpProbe::NoAnswer => "no answer".into(),
            UdpProbe::Unreachable => "icmp unreachable".into(),
        }
    }

    /// Classifies the result of a `recv` on a connected UDP socket.
    pub fn from_recv(result: &io::Result<usize>) -> Result<UdpProbe> {
        match result {
            Ok(n) => Ok(UdpProbe::Answered(*n)),
            Err(e) => match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Ok(UdpProbe::NoAnswer),
                io::ErrorKind::ConnectionRefused
                | io::ErrorKind::HostUnreachable
                | io::ErrorKind::NetworkUnreachable => Ok(UdpProbe::Unreachable),
                _ => match e.raw_os_error() {
                    Some(libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EACCES) => {
                        Ok(UdpProbe::Unreachable)
                    }
                    _ => Err(anyhow!("UDP receive failed unexpectedly: {e}")),
                },
            },
        }
    }
}

impl fmt::Display for UdpProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// Where a namespace made by `ip netns add NAME` lives.
pub fn netns_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

/// Moves the calling thread into the network namespace at `ns`.
pub(crate) fn enter(ns: &Path) -> Result<()> {
    let file =
        File::open(ns).with_context(|| format!("opening network namespace {}", ns.display()))?;
    // SAFETY: setns(2) on a file descriptor we own; it only changes the
    // calling thread's network namespace, which this thread keeps until it ends.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("setns into network namespace {}", ns.display()));
    }
    Ok(())
}

/// Runs `f` on a new thread inside the network namespace at `ns` and
/// returns its result.
pub fn in_netns<T, F>(ns: &Path, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    let path = ns.to_path_buf();
    let handle = thread::Builder::new()
        .name("vmtest-netns".into())
        .spawn(move || {
            enter(&path)?;
            f()
        })
        .context("spawning a thread for the network namespace")?;
    handle.join().map_err(|_| {
        anyhow!(
            "the thread inside network namespace {} panicked",
            ns.display()
        )
    })?
}

/// The index of interface `name` in the calling thread's namespace.
fn ifindex(name: &str) -> Result<u32> {
    let c = std::ffi::CString::new(name).context("interface name with NUL")?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("no interface {name} in the peer's namespace"));
    }
    Ok(index)
}

/// The socket address of `addr:port`; a link-local IPv6 address gets the
/// scope of interface `scope_if` (looked up in the current namespace).
pub(crate) fn socket_addr(addr: IpAddr, port: u16, scope_if: &str) -> Result<SocketAddr> {
    Ok(match addr {
        IpAddr::V6(v6) if is_link_local(&v6) => {
            SocketAddr::V6(SocketAddrV6::new(v6, port, 0, ifindex(scope_if)?))
        }
        other => SocketAddr::new(other, port),
    })
}

/// Whether `a` is in fe80::/10.
pub fn is_link_local(a: &Ipv6Addr) -> bool {
    (a.segments()[0] & 0xffc0) == 0xfe80
}

/// One TCP connect to `addr` (already in the current namespace).
pub(crate) fn tcp_connect(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<(Probe, Option<TcpStream>)> {
    let result = TcpStream::connect_timeout(&addr, timeout);
    let probe = Probe::from_connect(&result).with_context(|| format!("connecting to {addr}"))?;
    Ok((probe, result.ok()))
}

/// Connects; when open, reads what the server sends until it closes the
/// connection, `limit` bytes, or `timeout`.
pub(crate) fn tcp_read(
    addr: SocketAddr,
    timeout: Duration,
    limit: usize,
) -> Result<(Probe, Vec<u8>)> {
    let (probe, stream) = tcp_connect(addr, timeout)?;
    let mut data = Vec::new();
    if let Some(mut stream) = stream {
        let end = Instant::now() + timeout;
        let mut buf = [0u8; 512];
        while data.len() < limit {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            stream
                .set_read_timeout(Some(left))
                .context("setting a read timeout")?;
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => data.extend_from_slice(&buf[..n.min(limit - data.len())]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
                Err(e) => return Err(e).with_context(|| format!("reading from {addr}")),
            }
        }
    }
    Ok((probe, data))
}

/// Sends `payload` to `addr` from a connected UDP socket and waits up to
/// `timeout` for an answer.
pub(crate) fn udp_probe(addr: SocketAddr, payload: &[u8], timeout: Duration) -> Result<UdpProbe> {
    let bind: SocketAddr = match addr {
        SocketAddr::V4(_) => "0.0.0.0:0".parse().context("parsing the IPv4 wildcard")?,
        SocketAddr::V6(_) => "[::]:0".parse().context("parsing the IPv6 wildcard")?,
    };
    let socket = UdpSocket::bind(bind).context("binding a UDP socket")?;
    socket
        .connect(addr)
        .with_context(|| format!("connecting a UDP socket to {addr}"))?;
    socket
        .set_read_timeout(Some(timeout))
        .context("setting the UDP read timeout")?;
    match socket.send(payload) {
        Ok(_) => {}
        // A previous ICMP error may surface on send.
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Ok(UdpProbe::Unreachable),
        Err(e) => return Err(e).with_context(|| format!("sending a UDP datagram to {addr}")),
    }
    let mut buf = [0u8; 2048];
    let result = socket.recv(&mut buf);
    UdpProbe::from_recv(&result).with_context(|| format!("UDP probe of {addr}"))
}

/// Probes every port of `ports` on `addr` with a TCP connect, from `workers`
/// threads inside the namespace `ns` (a dropped SYN costs the whole
/// `timeout`, so the probes run in parallel). Results come back in the
/// order of `ports`.
pub fn tcp_scan(
    ns: &Path,
    addr: IpAddr,
    scope_if: &str,
    ports: &[u16],
    timeout: Duration,
    workers: usize,
) -> Result<Vec<(u16, Probe)>> {
    let scope_if = scope_if.to_string();
    parallel(ns, ports, workers, move |port| {
        let target = socket_addr(addr, port, &scope_if)?;
        Ok(tcp_connect(target, timeout)?.0)
    })
    .with_context(|| format!("TCP scan of {addr}"))
}

/// Sends each port of `ports` on `addr` its [`udp_payload`], in parallel
/// from inside the namespace `ns`, and waits up to `timeout` for answers.
pub fn udp_scan(
    ns: &Path,
    addr: IpAddr,
    scope_if: &str,
    ports: &[u16],
    timeout: Duration,
    workers: usize,
) -> Result<Vec<(u16, UdpProbe)>> {
    let scope_if = scope_if.to_string();
    parallel(ns, ports, workers, move |port| {
        let target = socket_addr(addr, port, &scope_if)?;
        udp_probe(target, &udp_payload(port), timeout)
    })
    .with_context(|| format!("UDP scan of {addr}"))
}

/// Runs `probe` for every port on `workers` threads inside namespace
/// `ns`; results in the order of `ports`; the first error wins.
fn parallel<T, F>(ns: &Path, ports: &[u16], workers: usize, probe: F) -> Result<Vec<(u16, T)>>
where
    T: Send + Clone + 'static,
    F: Fn(u16) -> Result<T> + Send + Sync + 'static,
{
    let queue: Arc<Mutex<VecDeque<(usize, u16)>>> =
        Arc::new(Mutex::new(ports.iter().copied().enumerate().collect()));
    let results: Arc<Mutex<Vec<Option<T>>>> = Arc::new(Mutex::new(vec![None; ports.len()]));
    let probe = Arc::new(probe);
    let mut handles: Vec<JoinHandle<Result<()>>> = Vec::new();
    for _ in 0..workers.clamp(1, ports.len().max(1)) {
        let (queue, results, probe) =
            (Arc::clone(&queue), Arc::clone(&results), Arc::clone(&probe));
        let ns = ns.to_path_buf();
        let handle = thread::Builder::new()
            .name("vmtest-scan".into())
            .spawn(move || -> Result<()> {
                enter(&ns)?;
                loop {
                    let next = queue
                        .lock()
                        .map_err(|_| anyhow!("scan queue poisoned"))?
                        .pop_front();
                    let Some((i, port)) = next else { return Ok(()) };
                    let r = probe(port)?;
                    results
                        .lock()
                        .map_err(|_| anyhow!("scan results poisoned"))?[i] = Some(r);
                }
            })
            .context("spawning a scan thread")?;
        handles.push(handle);
    }
    let mut first_error = None;
    for h in handles {
        let outcome = h
            .join()
            .map_err(|_| anyhow!("a scan thread panicked"))
            .and_then(|r| r);
        if let Err(e) = outcome {
            first_error.get_or_insert(e);
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let results = results
        .lock()
        .map_err(|_| anyhow!("scan results poisoned"))?;
    ports
        .iter()
        .zip(results.iter())
        .map(|(port, r)| match r {
            Some(p) => Ok((*port, p.clone())),
            None => Err(anyhow!("port {port} was not probed")),
        })
        .collect()
}

/// A TCP listener inside a namespace (dual-stack, all addresses), which
/// accepts connections in a background thread and records where they came
/// from. A positive control: a guest connecting *out* to it proves the
/// path between guest and peer works both ways.
#[derive(Debug)]
pub struct PeerListener {
    port: u16,
    seen: Arc<Mutex<Vec<SocketAddr>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PeerListener {
    /// Binds `[::]:port` in namespace `ns` (port 0: any free port) and
    /// starts accepting. Returns once the socket listens.
    pub fn start(ns: &Path, port: u16) -> Result<PeerListener> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel::<Result<u16>>();
        let ns_path = ns.to_path_buf();
        let (seen2, stop2) = (Arc::clone(&seen), Arc::clone(&stop));
        let thread = thread::Builder::new()
            .name("vmtest-peer-listener".into())
            .spawn(move || {
                let bound = enter(&ns_path).and_then(|()| {
                    let l = TcpListener::bind(("::", port))
                        .with_context(|| format!("binding [::]:{port} in the peer's namespace"))?;
                    l.set_nonblocking(true)
                        .context("making the listener non-blocking")?;
                    let port = l.local_addr().context("listener address")?.port();
                    Ok((l, port))
                });
                let listener = match bound {
                    Ok((l, port)) => {
                        let _ = tx.send(Ok(port));
                        l
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                while !stop2.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((mut stream, from)) => {
                            if let Ok(mut seen) = seen2.lock() {
                                seen.push(canonical(from));
                            }
                            let _ = stream.write_all(b"peer\n");
                        }
                        Err(_) => thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
            .context("spawning the peer listener thread")?;
        let port = rx
            .recv_timeout(Duration::from_secs(10))
            .context("the peer listener did not start")??;
        Ok(PeerListener {
            port,
            seen,
            stop,
            thread: Some(thread),
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the accepted connections came from (IPv4-mapped addresses
    /// shown as IPv4), in order.
    pub fn connections(&self) -> Vec<SocketAddr> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits up to `timeout` for a connection from `from`.
    pub fn wait_for(&self, from: IpAddr, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if self.connections().iter().any(|a| a.ip() == from) {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PeerListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An IPv4-mapped IPv6 socket address as IPv4; others unchanged.
fn canonical(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => a,
        },
        v4 => v4,
    }
}

/// A UDP payload that a real service on `port` would answer (DNS, NTP,
/// SNMP, mDNS, LLMNR queries); for other ports a few bytes of text.
pub fn udp_payload(port: u16) -> Vec<u8> {
    // A DNS query for the root's NS records (id 0x7674, RD set).
    let dns_query: Vec<u8> = vec![
        0x76, 0x74, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,
        0x00, 0x01,
    ];
    match port {
        53 | 5353 | 5355 => dns_query,
        // NTPv3 client request.
        123 => {
            let mut p = vec![0u8; 48];
            p[0] = 0x1b;
            p
        }
        // SNMPv1 get-request, community "public", sysDescr.0.
        161 => vec![
            0x30, 0x26, 0x02, 0x01, 0x00, 0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c', 0xa0,
            0x19, 0x02, 0x01, 0x01, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x30, 0x0e, 0x30, 0x0c,
            0x06, 0x08, 0x2b, 0x06, 0x01, 0x02, 0x01, 0x01, 0x01, 0x00, 0x05, 0x00,
        ],
        _ => b"vm-test probe\n".to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_results_are_classified() {
        let err = |kind| -> io::Result<TcpStream> { Err(io::Error::from(kind)) };
        assert_eq!(
            Probe::from_connect(&err(io::ErrorKind::ConnectionRefused)).unwrap(),
            Probe::Closed
        );
        assert_eq!(
            Probe::from_connect(&err(io::ErrorKind::TimedOut)).unwrap(),
            Probe::Filtered
        );
        let unreach: io::Result<TcpStream> = Err(io::Error::from_raw_os_error(libc::EHOSTUNREACH));
        assert_eq!(Probe::from_connect(&unreach).unwrap(), Probe::Unreachable);
        assert!(Probe::from_connect(&err(io::ErrorKind::InvalidInput)).is_err());
    }

    #[test]
    fn recv_results_are_classified() {
        assert_eq!(
            UdpProbe::from_recv(&Ok(12)).unwrap(),
            UdpProbe::Answered(12)
        );
        let err = |kind| -> io::Result<usize> { Err(io::Error::from(kind)) };
        assert_eq!(
            UdpProbe::from_recv(&err(io::ErrorKind::WouldBlock)).unwrap(),
            UdpProbe::NoAnswer
        );
        assert_eq!(
            UdpProbe::from_recv(&err(io::ErrorKind::ConnectionRefused)).unwrap(),
            UdpProbe::Unreachable
        );
    }

    #[test]
    fn link_local_detection() {
        assert!(is_link_local(&"fe80::1".parse().unwrap()));
        assert!(is_link_local(&"febf::1".parse().unwrap()));
        assert!(!is_link_local(&"fec0::1".parse().unwrap()));
        assert!(!is_link_local(&"2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn mapped_addresses_become_ipv4() {
        let a: SocketAddr = "[::ffff:10.77.0.5]:1234".parse().unwrap();
        assert_eq!(
            canonical(a),
            "10.77.0.5:1234".parse::<SocketAddr>().unwrap()
        );
        let b: SocketAddr = "[fe80::1]:1".parse().unwrap();
        assert_eq!(canonical(b), b);
    }

    #[test]
    fn payloads_are_protocol_requests() {
        assert_eq!(udp_payload(123).len(), 48);
        assert_eq!(udp_payload(53)[2], 0x01);
        assert_eq!(udp_payload(161)[0], 0x30);
        assert_eq!(udp_payload(161)[1] as usize, udp_payload(161).len() - 2);
        assert!(!udp_payload(41641).is_empty());
    }

    #[test]
    fn probes_on_loopback_in_own_namespace() {
        // Runs in the test's own namespace (no root needed): a closed port
        // on loopback is refused, a listening one is open. The port lies
        // below the ephemeral range: a freed ephemeral port may come back as
        // the probe's own source port, and a TCP connection to itself is
        // "open" (this flaked once in CI).
        let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|r| r.split_whitespace().next()?.parse().ok())
            .unwrap_or(32768);
        let l = (low.saturating_sub(2000)..low)
            .find_map(|p| TcpListener::bind(("127.0.0.1", p)).ok())
            .expect("a free port below the ephemeral range");
        let port = l.local_addr().unwrap().port();
        assert!(port < low);
        let (p, _) = tcp_connect(
            SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(2),
        )
        .unwrap();
        assert_eq!(p, Probe::Open);
        drop(l);
        let (p, _) = tcp_connect(
            SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(2),
        )
        .unwrap();
        assert_eq!(p, Probe::Closed);
        let u = (low.saturating_sub(2000)..low)
            .find_map(|p| UdpSocket::bind(("127.0.0.1", p)).ok())
            .expect("a free UDP port below the ephemeral range");
        let uport = u.local_addr().unwrap().port();
        drop(u);
        let r = udp_probe(
            SocketAddr::from(([127, 0, 0, 1], uport)),
            b"x",
            Duration::from_millis(500),
        )
        .unwrap();
        assert_eq!(r, UdpProbe::Unreachable);
    }
}
