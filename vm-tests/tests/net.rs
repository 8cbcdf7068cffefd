//! The test network ([`vm_tests::net::TestNet`]) on the host, and the
//! NET-4/NET-5 logic against the real appliance image.
//!
//! Both need root (bridges, taps, network namespaces), so both are ignored
//! by default and fail, saying so, when run without it; `cargo xtask ci`
//! runs the host test by name when it runs as root. The image test (under
//! TCG it takes a few minutes) runs with
//! `VMTEST_IMAGE=target/image/openclaw-appliance.raw cargo test -p vm-tests
//! --test net -- --ignored`; it fails, saying so, without `VMTEST_IMAGE` or
//! root. Logs and the overlay stay under `target/tmp/vm-tests-net/`.

use std::io::Read;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use vm_tests::net::external::{ScanPlan, scan_external};
use vm_tests::net::tailscale::prove_tailscale_allow;
use vm_tests::net::{GATEWAY_IP, METADATA_IP, Probe, TestNet, UdpProbe};
use vm_tests::{Machine, MachineConfig};

const DONE_MARKER: &str = "/var/lib/openclaw-appliance/firstboot.done";

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .context("opening /dev/urandom")?
        .read_exact(&mut buf)
        .context("reading /dev/urandom")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// A valid v1 user-data document with fresh secrets.
fn userdata() -> Result<Vec<u8>> {
    Ok(format!(
        "#openclaw-appliance-userdata v1\n\
         gateway-token = \"{}\"\n\
         anthropic-setup-token = \"sk-ant-oat01-vmtest-{}\"\n",
        random_hex(24)?,
        random_hex(45)?
    )
    .into_bytes())
}

const METADATA: &str = "hostname: vmtest-net\ninstance-id: 4242\npublic-keys: []\n";

/// Names of our links and namespaces that still exist.
fn leftovers(base: &str) -> Result<Vec<String>> {
    let links = Command::new("ip").args(["-o", "link", "show"]).output()?;
    let netns = Command::new("ip").args(["netns", "list"]).output()?;
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&links.stdout),
        String::from_utf8_lossy(&netns.stdout)
    );
    Ok(text
        .split(|c: char| c.is_whitespace() || c == ':' || c == '@')
        .filter(|w| w.starts_with(base))
        .map(str::to_string)
        .collect())
}

/// The net on its own: the peer reaches the gateway, the metadata service
/// answers and records the request, everything is gone after drop.
#[test]
#[ignore = "needs root (bridges, taps, network namespaces); run as root with cargo test -p vm-tests --test net testnet_on_the_host -- --ignored (`cargo xtask ci` does as root)"]
fn testnet_on_the_host() -> Result<()> {
    ensure!(
        is_root(),
        "testnet_on_the_host needs root (bridges, taps, network namespaces): run it as root"
    );
    // What a killed run (a pid that cannot exist) left behind is swept.
    let stale = "vtu3ffffe-0";
    let _ = Command::new("ip")
        .args(["link", "add", &format!("{stale}br"), "type", "bridge"])
        .status()?;
    let _ = Command::new("ip")
        .args(["netns", "add", &format!("{stale}p")])
        .status()?;
    ensure!(leftovers(stale)?.len() == 2, "stale objects not created");
    let net = TestNet::create(
        "vtu",
        b"#openclaw-appliance-userdata v1\n".to_vec(),
        METADATA.into(),
    )?;
    let base = net.base_name().to_string();
    ensure!(!leftovers(&base)?.is_empty(), "no links for {base}");
    let left = leftovers(stale)?;
    ensure!(left.is_empty(), "stale objects not swept: {left:?}");

    // Nothing listens on the gateway address: a RST, not a timeout.
    let t = Duration::from_secs(2);
    assert_eq!(net.peer_tcp(IpAddr::V4(GATEWAY_IP), 22, t)?, Probe::Closed);
    assert_eq!(
        net.peer_udp(IpAddr::V4(GATEWAY_IP), 53, t)?,
        UdpProbe::Unreachable
    );

    // The metadata service, reached through the gateway like the guest does.
    let route = net.peer_run(&[
        "ip",
        "route",
        "add",
        &format!("{METADATA_IP}/32"),
        "via",
        &GATEWAY_IP.to_string(),
    ])?;
    ensure!(
        route.status.success(),
        "ip route add: {}",
        String::from_utf8_lossy(&route.stderr)
    );
    let (probe, body) = net.peer_tcp_read(IpAddr::V4(METADATA_IP), 80, t)?;
    assert_eq!(probe, Probe::Open);
    assert!(body.is_empty(), "no request, no answer");
    let curl = net.peer_run(&[
        "curl",
        "-fsS",
        "--max-time",
        "5",
        "http://169.254.169.254/hetzner/v1/metadata",
    ]);
    match curl {
        Ok(out) if out.status.success() => {
            assert_eq!(String::from_utf8_lossy(&out.stdout), METADATA);
            let reqs = net.metadata_requests();
            let last = reqs.last().context("no request recorded")?;
            assert_eq!(last.path, "/hetzner/v1/metadata");
            assert_eq!(last.peer.ip(), IpAddr::V4(vm_tests::net::PEER_IP));
            assert_eq!(net.userdata_requests(), 0);
        }
        other => eprintln!("curl not usable on the host, HTTP part skipped: {other:?}"),
    }

    // A listener in the peer sees a connection from the infrastructure side.
    let listener = net.peer_listen(0)?;
    let port = listener.port().to_string();
    let out = Command::new("ip")
        .args(["netns", "exec", net.infra_netns(), "bash", "-c"])
        .arg(format!("exec 3<>/dev/tcp/10.77.0.99/{port}"))
        .output()?;
    ensure!(
        out.status.success(),
        "connect from infra: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(listener.wait_for(IpAddr::V4(GATEWAY_IP), Duration::from_secs(5)));
    drop(listener);

    drop(net);
    let left = leftovers(&base)?;
    assert!(left.is_empty(), "left behind: {left:?}");
    Ok(())
}

/// Boots the appliance image on a [`TestNet`]: first boot reads user-data
/// from the metadata service, then NET-4 and NET-5 run from the peer.
#[test]
#[ignore = "needs VMTEST_IMAGE=<path to a built raw image> and root; run with --ignored"]
fn net_checks_on_the_image() -> Result<()> {
    let image = std::env::var_os("VMTEST_IMAGE").context(
        "VMTEST_IMAGE is not set: set VMTEST_IMAGE=target/image/openclaw-appliance.raw \
         (a raw image built by `cargo xtask build-image`) to run net_checks_on_the_image",
    )?;
    ensure!(
        is_root(),
        "net_checks_on_the_image needs root (bridges, taps, network namespaces)"
    );
    let t0 = Instant::now();
    // Declared before the machine: dropped after it, once QEMU let go of the taps.
    let net = TestNet::create("vt", userdata()?, METADATA.into())?;
    let state = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("vm-tests-net");
    let mut config = MachineConfig::new("net", image, state);
    config.extra_args = net.qemu_args();
    config.deadline = Instant::now() + Duration::from_secs(30 * 60);
    let mut m = Machine::start(config)?;

    // First boot, from the metadata service this time.
    let state = m.wait_until_succeeds(
        &format!(
            "if test -e {DONE_MARKER}; then echo done; \
             elif systemctl is-failed --quiet openclaw-firstboot.service; then echo failed; \
             else exit 1; fi"
        ),
        Duration::from_secs(15 * 60),
    )?;
    let firstboot = t0.elapsed();
    if state.trim() != "done" {
        let journal = m.succeed(
            "journalctl -b -u openclaw-firstboot.service --no-pager -o cat | tail -n 40",
        )?;
        bail!("openclaw-firstboot.service failed:\n{journal}");
    }
    let result = m.succeed("systemctl show -P Result openclaw-firstboot.service")?;
    ensure!(result.trim() == "success", "first boot result: {result}");
    let guest = net.guest_ip(Duration::from_secs(60))?;
    let reqs = net.metadata_requests();
    eprintln!("metadata requests: {reqs:?}");
    ensure!(
        reqs.iter().any(|r| r.path == "/hetzner/v1/userdata"
            && r.status == 200
            && r.peer.ip() == IpAddr::V4(guest)),
        "the guest ({guest}) did not fetch user-data from the metadata service: {reqs:?}"
    );
    let source = m.succeed("journalctl -b -u openclaw-firstboot.service --no-pager -o cat | grep -i 'user-data: read from' || true")?;
    eprintln!("first boot: {}", source.trim());

    // SEC-5 as seen from our metadata service: root may, openclaw may not.
    let before = net.metadata_requests().len();
    let root = m.execute("curl -fsS --max-time 5 -o /dev/null -w '%{http_code}' http://169.254.169.254/hetzner/v1/metadata")?;
    let user = m.execute(
        "runuser -u openclaw -- curl -sS --max-time 5 -o /dev/null http://169.254.169.254/hetzner/v1/metadata 2>&1",
    )?;
    eprintln!(
        "SEC-5 probe: root curl exit {} ({}); openclaw curl exit {} ({}); server saw {} new request(s)",
        root.0,
        root.1.trim(),
        user.0,
        user.1.trim(),
        net.metadata_requests().len() - before
    );

    // NET-4.
    let t = Instant::now();
    let scan = scan_external(&mut m, &net, &ScanPlan::default(), false)?;
    let net4 = t.elapsed();
    eprintln!(
        "NET-4 {}:\n{}",
        if scan.passed() { "PASS" } else { "FAIL" },
        scan.detail()
    );

    // NET-5.
    let t = Instant::now();
    let proof = prove_tailscale_allow(&mut m, &net)?;
    let net5 = t.elapsed();
    eprintln!(
        "NET-5 {}: {}",
        if proof.passed() { "PASS" } else { "FAIL" },
        proof.detail()
    );

    // The link went away again.
    let links = m.succeed("ip -o link show | cut -d: -f2")?;

    // The checks can fail. A wildcard listener on 8080: filtered while UFW
    // is on (NET-4 still passes), open once UFW is off (NET-4 fails), and
    // with UFW off NET-5 fails too (its listener is reachable from outside).
    let t = Instant::now();
    let quick = ScanPlan {
        tcp_v4_extra: Vec::new(),
        ipv6: false,
        ..ScanPlan::default()
    };
    m.succeed(
        "systemd-run --unit=vmtest-wildcard --collect --quiet -- \
         systemd-socket-activate --listen=0.0.0.0:8080 --accept --inetd /bin/echo hello",
    )?;
    m.wait_for_open_port(8080, Duration::from_secs(60))?;
    let with_ufw = scan_external(&mut m, &net, &quick, false)?;
    eprintln!(
        "NET-4 with a wildcard listener on 8080, UFW on: {}\n{}",
        with_ufw.passed(),
        with_ufw.detail()
    );
    m.succeed("ufw disable")?;
    let without_ufw = scan_external(&mut m, &net, &quick, false)?;
    eprintln!(
        "NET-4 with UFW disabled: {}\n{}",
        without_ufw.passed(),
        without_ufw.detail()
    );
    let proof_off = prove_tailscale_allow(&mut m, &net)?;
    eprintln!(
        "NET-5 with UFW disabled: {}: {}",
        proof_off.passed(),
        proof_off.detail()
    );
    m.succeed("systemctl stop vmtest-wildcard.service || true; ufw --force enable")?;
    let negative = t.elapsed();

    eprintln!("TIMING negative-controls={:.1}s", negative.as_secs_f64());
    ensure!(
        with_ufw.passed(),
        "NET-4 with UFW on must not see 8080:\n{}",
        with_ufw.detail()
    );
    ensure!(
        !without_ufw.passed() && without_ufw.open_tcp().iter().any(|a| a.ends_with(":8080")),
        "NET-4 must see 8080 open with UFW off:\n{}",
        without_ufw.detail()
    );
    ensure!(
        !proof_off.passed(),
        "NET-5 must fail with UFW off: {}",
        proof_off.detail()
    );
    eprintln!(
        "guest links after NET-5: {}",
        links.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    eprintln!(
        "TIMING first-boot-done={:.1}s net4={:.1}s net5={:.1}s total={:.1}s accel={}",
        firstboot.as_secs_f64(),
        net4.as_secs_f64(),
        net5.as_secs_f64(),
        t0.elapsed().as_secs_f64(),
        m.accel().accel
    );
    m.shutdown()?;
    ensure!(scan.passed(), "NET-4 failed:\n{}", scan.detail());
    ensure!(proof.passed(), "NET-5 failed: {}", proof.detail());
    ensure!(
        proof.cleanup.is_empty(),
        "NET-5 cleanup: {:?}",
        proof.cleanup
    );
    ensure!(
        !links.contains("tailscale0"),
        "tailscale0 still there: {links}"
    );
    Ok(())
}
