//! NET-4, NET-5: checks from outside the guest, by the peer of the test
//! network ([`crate::net::TestNet`]). The logic lives in
//! [`crate::net::external`] and [`crate::net::tailscale`] so tests can run
//! it on any machine; here it becomes an [`Outcome`].

use anyhow::{Context, Result};

use super::Ctx;
use crate::net::external::{ScanPlan, scan_external};
use crate::net::tailscale::prove_tailscale_allow;
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

/// NET-5: a listener on all addresses of the guest is reachable from the
/// peer through `tailscale0` (a hot-plugged stand-in when Tailscale cannot
/// log in) and not through the external interface.
pub fn net_5(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    let Some(net) = ctx.net else {
        return Ok(Outcome::NotRun(NO_NET.into()));
    };
    let proof = prove_tailscale_allow(ctx.machine, net).context("NET-5 probe from the peer")?;
    let detail = proof.detail();
    for c in &proof.cleanup {
        ctx.notes.push(format!("NET-5 cleanup: {c}"));
    }
    Ok(if proof.passed() {
        Outcome::Pass(detail)
    } else {
        Outcome::Fail(detail)
    })
}
