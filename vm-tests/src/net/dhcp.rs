//! The DHCP server of the test network: `dnsmasq` (Debian package
//! `dnsmasq-base`) in the infrastructure namespace, DHCP only (`--port=0`
//! turns its DNS server off), and its lease file.

use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::path::Path;

/// What `dnsmasq` needs to know.
#[derive(Debug, Clone)]
pub(crate) struct DhcpConfig<'a> {
    /// Interface to serve (inside the namespace).
    pub interface: &'a str,
    /// First and last address handed out.
    pub range: (Ipv4Addr, Ipv4Addr),
    /// Netmask of the range.
    pub netmask: Ipv4Addr,
    /// Default gateway announced (option 3).
    pub router: Ipv4Addr,
    /// Lease file.
    pub lease_file: &'a Path,
    /// Seconds dnsmasq waits before each offer ([`REPLY_DELAY_ENV`]).
    pub reply_delay: Option<u32>,
}

/// Set to a number of seconds to have the test network's DHCP server wait
/// that long before each offer (`--dhcp-reply-delay`): a slow DHCP answer,
/// meant to widen the race the image orders tailscaled after
/// (docs/tailscale.md). Not yet shown to: with 15, one BIOS pass of the
/// image without that order still logged in.
pub const REPLY_DELAY_ENV: &str = "VMTEST_DHCP_REPLY_DELAY";

/// The reply delay [`REPLY_DELAY_ENV`] asks for; `None` when unset.
pub(crate) fn reply_delay_from_env() -> anyhow::Result<Option<u32>> {
    match std::env::var(REPLY_DELAY_ENV) {
        Err(_) => Ok(None),
        Ok(v) => v.trim().parse::<u32>().map(Some).map_err(|e| {
            anyhow::anyhow!(
                "{REPLY_DELAY_ENV}={v:?}: {e}; give whole seconds, e.g. 15, or unset it"
            )
        }),
    }
}

/// The line dnsmasq logs once its DHCP server is up.
pub(crate) const READY_LINE: &str = "DHCP, IP range";

/// `dnsmasq`'s argv (without the program): foreground, no config file, no
/// DNS, DHCP on one interface only, leases in our file, runs as root (so
/// it can write the lease file in the harness's private directory). No
/// `--pid-file`: dnsmasq does not write one with `--no-daemon`; the
/// harness knows the pid as dnsmasq's parent.
pub(crate) fn dnsmasq_args(c: &DhcpConfig<'_>) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "--no-daemon".to_string(),
        "--conf-file=/dev/null".to_string(),
        "--no-resolv".to_string(),
        "--no-hosts".to_string(),
        "--port=0".to_string(),
        format!("--interface={}", c.interface),
        "--except-interface=lo".to_string(),
        "--bind-interfaces".to_string(),
        "--user=root".to_string(),
        "--group=root".to_string(),
        "--dhcp-authoritative".to_string(),
        "--log-dhcp".to_string(),
        format!("--dhcp-range={},{},{},1h", c.range.0, c.range.1, c.netmask),
        format!("--dhcp-option=3,{}", c.router),
        // No DNS server (there is none on this network).
        "--dhcp-option=6".to_string(),
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    let mut lease = OsString::from("--dhcp-leasefile=");
    lease.push(c.lease_file.as_os_str());
    args.push(lease);
    if let Some(secs) = c.reply_delay {
        args.push(format!("--dhcp-reply-delay={secs}").into());
    }
    args
}

/// The address leased to `mac` (case-insensitive) in a dnsmasq lease file
/// (`<expiry> <mac> <ip> <hostname> <client-id>` per line); the last
/// matching line wins.
pub fn lease_for(leases: &str, mac: &str) -> Option<Ipv4Addr> {
    leases.lines().rev().find_map(|line| {
        let mut f = line.split_whitespace();
        let _expiry = f.next()?;
        let hw = f.next()?;
        let ip = f.next()?;
        hw.eq_ignore_ascii_case(mac)
            .then(|| ip.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_found_by_mac() {
        let text = "1732620000 52:54:00:77:00:10 10.77.0.23 openclaw 01:52:54:00:77:00:10\n\
                    1732620001 52:54:00:aa:bb:cc 10.77.0.24 * *\n";
        assert_eq!(
            lease_for(text, "52:54:00:77:00:10"),
            Some(Ipv4Addr::new(10, 77, 0, 23))
        );
        assert_eq!(
            lease_for(text, "52:54:00:AA:BB:CC"),
            Some(Ipv4Addr::new(10, 77, 0, 24))
        );
        assert_eq!(lease_for(text, "52:54:00:00:00:00"), None);
        assert_eq!(lease_for("", "52:54:00:77:00:10"), None);
        assert_eq!(lease_for("garbage\n1 2\n", "2"), None);
    }

    #[test]
    fn dnsmasq_is_dhcp_only_and_foreground() {
        let lease = Path::new("/tmp/x/leases");
        let args = dnsmasq_args(&DhcpConfig {
            interface: "lan0",
            range: (Ipv4Addr::new(10, 77, 0, 10), Ipv4Addr::new(10, 77, 0, 50)),
            netmask: Ipv4Addr::new(255, 255, 255, 0),
            router: Ipv4Addr::new(10, 77, 0, 1),
            lease_file: lease,
            reply_delay: Some(15),
        });
        let args: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        for expected in [
            "--no-daemon",
            "--conf-file=/dev/null",
            "--port=0",
            "--interface=lan0",
            "--bind-interfaces",
            "--dhcp-range=10.77.0.10,10.77.0.50,255.255.255.0,1h",
            "--dhcp-option=3,10.77.0.1",
            "--dhcp-leasefile=/tmp/x/leases",
            "--dhcp-reply-delay=15",
        ] {
            assert!(
                args.iter().any(|a| a == expected),
                "missing {expected}: {args:?}"
            );
        }
    }
}
