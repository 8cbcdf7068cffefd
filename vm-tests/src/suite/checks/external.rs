//! NET-4: the check from outside the guest, by the peer of the test
//! network ([`crate::net::TestNet`]). The logic lives in
//! [`crate::net::external`] so tests can run it on any machine; here it
//! becomes an [`Outcome`] (NET-5, from the tailnet, is in `ts.rs`).

use anyhow::{Context, Result};

use super::Ctx;
use crate::net::external::{ScanPlan, scan_external};
use crate::suite::report::Outcome;

/// Why a check needs the test network.
const NO_NET: &str = "no test network: the host could not create the bridge, taps and \
     network namespaces (needs root, iproute2, dnsmasq-base, /dev/net/tun), so there is no \
     peer on the guest's network to probe from";

/// NET-4: a peer on the guest's external network sees every probed TCP
/// port (the named ones, a sample, all of 1–1024; IPv4 and IPv6
/// link-local) closed or filtered and gets no UDP answer — after a
/// positive control proved the peer and the guest can reach each other.
pub fn net_4(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    let Some(net) = ctx.net else {
        return Ok(Outcome::NotRun(NO_NET.into()));
    };
    let report = scan_external(ctx.machine, net, &ScanPlan::default(), ctx.facts.tailscale)
        .context("NET-4 scan from the peer")?;
    let detail = report.detail();
    Ok(if report.passed() {
        Outcome::Pass(detail)
    } else {
        Outcome::Fail(detail)
    })
}
