//! NET-1..3, NET-6, NET-7: firewall, listeners, gateway config and auth
//! (the Tailscale side, NET-8 and TS-1, is in `ts.rs`).

use anyhow::{Context, Result};
use serde_json::Value;

use super::{Ctx, as_user, expect};
use crate::machine::Machine;
use crate::net::external::TAILSCALE_UDP;
use crate::ruleset::{self, PathKind};
use crate::suite::report::Outcome;

/// `ufw status verbose`, as root.
fn ufw_status(ctx: &mut Ctx<'_>) -> Result<String> {
    ctx.machine.succeed("ufw status verbose")
}

/// NET-1: UFW active, default deny incoming, allow outgoing; the kernel's
/// INPUT policy really drops.
pub fn net_1(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    let status = ufw_status(ctx)?;
    let active = status.lines().any(|l| l.trim() == "Status: active");
    let defaults = status
        .lines()
        .find(|l| l.starts_with("Default:"))
        .unwrap_or("")
        .to_string();
    let deny_in = defaults.contains("deny (incoming)");
    let allow_out = defaults.contains("allow (outgoing)");
    let policy4 = ctx.machine.succeed("iptables -S INPUT | head -n1")?;
    let policy6 = ctx.machine.succeed("ip6tables -S INPUT | head -n1")?;
    let drops = policy4.trim() == "-P INPUT DROP" && policy6.trim() == "-P INPUT DROP";
    Ok(expect(
        active && deny_in && allow_out && drops,
        format!(
            "ufw active: {active}; {defaults}; iptables: {}; ip6tables: {}",
            policy4.trim(),
            policy6.trim()
        ),
    ))
}

/// NET-2, from the attacker's side of the rules: the whole ruleset
/// (`iptables-save`, `ip6tables-save`: every table, including what `ufw
/// status` does not show: `before.rules`, tailscaled's chains, any port
/// forward) walked from `filter INPUT` and `nat PREROUTING`
/// ([`crate::ruleset`]). Every way in must be one of the allowed shapes
/// (loopback, `tailscale0`, replies, ICMP, the DHCP client, tailscaled's
/// WireGuard port, ufw's stock multicast accepts), the tailnet allow must
/// exist for IPv4 and IPv6, nothing may listen behind the multicast
/// accepts, and a logged-in tailscaled's chain must be in view. NET-4 and
/// NET-5 then probe the two sides from outside (the external peer sees
/// nothing open; traffic on `tailscale0` gets in).
pub fn net_2(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    let mut ok = true;
    let mut lines = Vec::new();
    let mut multicast = std::collections::BTreeSet::new();
    let mut ts_chain = false;
    // Run in the guest, not on the host.
    for (family, dump) in [("IPv4", "iptables-save"), ("IPv6", "ip6tables-save")] {
        let save = ctx.machine.succeed(dump)?;
        let tables = ruleset::parse(&save);
        ts_chain |= tables
            .get("filter")
            .is_some_and(|t| t.contains_key("ts-input"));
        let paths = ruleset::inbound_paths(&tables, TAILSCALE_UDP);
        let tailnet = paths.iter().any(|p| p.kind == PathKind::Tailnet);
        ok &= tailnet;
        lines.push(format!(
            "{family} ({dump}, every table): {} way(s) in; the tailnet allow: {}",
            paths.len(),
            if tailnet { "present" } else { "MISSING" }
        ));
        let icmp = paths.iter().filter(|p| p.kind == PathKind::Icmp).count();
        for p in &paths {
            if let PathKind::Multicast(port) = p.kind {
                multicast.insert(port);
            }
            let label = match p.kind {
                PathKind::Other => {
                    ok = false;
                    "NOT ALLOWED".to_string()
                }
                // Listed as a count: ufw's stock ICMP types, no port.
                PathKind::Icmp => continue,
                ref kind => format!("{kind:?}"),
            };
            lines.push(format!("  {label:<16} {p}"));
        }
        lines.push(format!(
            "  Icmp             {icmp} rule(s) (ICMP types, no port)"
        ));
    }
    if !multicast.is_empty() {
        let filter = multicast
            .iter()
            .map(|p| format!("sport = :{p}"))
            .collect::<Vec<_>>()
            .join(" or ");
        let bound = ctx.machine.succeed(&format!("ss -Hlunp '( {filter} )'"))?;
        let bound = bound.trim();
        ok &= bound.is_empty();
        lines.push(format!(
            "UDP sockets behind the multicast accepts {multicast:?}: {}",
            if bound.is_empty() { "none" } else { bound }
        ));
    }
    if ctx.facts.tailscale {
        let status = ctx
            .machine
            .succeed("tailscale status --json 2>/dev/null || true")?;
        let state = serde_json::from_str::<Value>(&status)
            .ok()
            .and_then(|v| v.get("BackendState")?.as_str().map(str::to_string))
            .unwrap_or_else(|| "unknown".into());
        let hidden = state == "Running" && !ts_chain;
        ok &= !hidden;
        lines.push(format!(
            "tailscaled: {state}; its ts-input chain in iptables-save: {ts_chain}{}",
            if hidden {
                " (its rules are outside this view: nftables mode?)"
            } else {
                ""
            }
        ));
    }
    Ok(expect(ok, lines.join("\n")))
}

/// NET-3: the gateway listens, and only on loopback; no node socket on a
/// wildcard or external address (18791, 18793 included).
pub fn net_3(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    let port = ctx.facts.port;
    ctx.machine
        .wait_for_open_port(port, std::time::Duration::from_secs(180))
        .context("the gateway never listened")?;
    let out = ctx.machine.succeed("ss -H -tulnp")?;
    let mut node_lines = Vec::new();
    let mut bad = Vec::new();
    let mut gateway_seen = false;
    for line in out.lines() {
        if !(line.contains("\"node\"") || line.contains("openclaw")) {
            continue;
        }
        node_lines.push(line.to_string());
        let local = line.split_whitespace().nth(4).unwrap_or("");
        let (addr, p) = local.rsplit_once(':').unwrap_or((local, ""));
        let loopback = addr == "127.0.0.1" || addr == "[::1]" || addr.starts_with("127.");
        if p == port.to_string() {
            gateway_seen = true;
        }
        if !loopback {
            bad.push(local.to_string());
        }
    }
    let detail = format!(
        "node/openclaw sockets:\n{}{}",
        node_lines.join("\n"),
        if bad.is_empty() {
            String::new()
        } else {
            format!("\nNOT loopback: {}", bad.join(", "))
        }
    );
    Ok(expect(gateway_seen && bad.is_empty(), detail))
}

/// Reads the gateway user's `openclaw.json` (JSON written by the build and first boot).
pub fn openclaw_json(ctx: &mut Ctx<'_>) -> Result<Value> {
    let path = format!("/home/{}/.openclaw/openclaw.json", ctx.facts.user);
    let bytes = ctx.machine.copy_from_vm(&path)?;
    serde_json::from_slice(&bytes).with_context(|| format!("{path} is not JSON"))
}

/// Compares `cfg[pointer]` with `want`; records the line in `seen`.
pub fn key_is(cfg: &Value, pointer: &str, want: &Value, seen: &mut Vec<String>) -> bool {
    let got = cfg.pointer(pointer).cloned().unwrap_or(Value::Null);
    let ok = &got == want;
    seen.push(format!(
        "{} {pointer} = {got}{}",
        if ok { "ok " } else { "BAD" },
        if ok {
            String::new()
        } else {
            format!(" (want {want})")
        }
    ));
    ok
}

/// The `gateway.trustedProxies` NET-6 expects: loopback only, where Serve
/// connects from. A documented deviation from NET-6's literal
/// `["127.0.0.1","100.64.0.0/10"]` (docs/openclaw-config.md).
pub const TRUSTED_PROXIES: [&str; 1] = ["127.0.0.1"];

/// Why [`TRUSTED_PROXIES`] is narrower than NET-6's list (the report says it).
pub const TRUSTED_PROXIES_WHY: &str = "trustedProxies = [\"127.0.0.1\"] is a documented deviation from NET-6's list: with 100.64.0.0/10 trusted as a proxy the pinned OpenClaw cannot attribute any Serve client, so Serve answers 403 even with the token (NET-8)";

/// NET-6: the baked and first-boot config, valid under the pinned OpenClaw.
pub fn net_6(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    let cfg = openclaw_json(ctx)?;
    let mut seen = Vec::new();
    // Always off: Serve is set up by root at first boot (TS-2), so the
    // gateway neither manages it nor needs the operator right.
    let serve = "off";
    let mut ok = true;
    for (p, v) in [
        ("/gateway/bind", Value::from("loopback")),
        ("/gateway/port", Value::from(ctx.facts.port)),
        ("/gateway/auth/mode", Value::from("token")),
        ("/gateway/auth/allowTailscale", Value::from(true)),
        (
            "/gateway/trustedProxies",
            serde_json::json!(TRUSTED_PROXIES),
        ),
        ("/gateway/tailscale/mode", Value::from(serve)),
        ("/update/checkOnStart", Value::from(false)),
    ] {
        ok &= key_is(&cfg, p, &v, &mut seen);
    }
    let funnel = cfg.pointer("/gateway/tailscale/mode") == Some(&Value::from("funnel"));
    ok &= !funnel;
    let device_auth_off =
        cfg.pointer("/gateway/controlUi/dangerouslyDisableDeviceAuth") == Some(&Value::from(true));
    ok &= !device_auth_off;
    let (rc, out) = ctx
        .machine
        .execute(&as_user(ctx, "openclaw config validate --json"))?;
    seen.push(format!("openclaw config validate: rc {rc}: {}", out.trim()));
    ok &= rc == 0;
    seen.push(TRUSTED_PROXIES_WHY.into());
    seen.push(if ctx.facts.tailscale {
        "gateway.tailscale.mode = off: Serve is configured by root at first boot (TS-2); NET-8 checks its route".into()
    } else {
        "not applicable: Serve (no Tailscale in this image)".to_string()
    });
    Ok(expect(ok, seen.join("\n")))
}

/// The API path NET-7 and NET-8 call: a tool invocation.
pub const PROBE_PATH: &str = "/tools/invoke";
/// The body of that call (a harmless read-only tool).
pub const PROBE_BODY: &str = r#"{"tool":"sessions_list","args":{}}"#;

/// The bearer token a NET-7 request carries.
#[derive(Clone, Copy)]
pub enum Bearer {
    /// No `Authorization` header.
    None,
    /// A well-formed token that is not the gateway's.
    Wrong,
    /// The gateway's token, read from `openclaw.json` in the guest (never
    /// on a command line).
    Right,
}

/// POSTs a tool invocation to the gateway with curl as root; returns the
/// HTTP status (`000`: no answer) and the start of the body.
fn gateway_status(ctx: &mut Ctx<'_>, bearer: Bearer) -> Result<(String, String)> {
    let (code, body) = gateway_status_on(ctx.machine, ctx.facts.port, &ctx.facts.user, bearer)?;
    Ok((code, ctx.secrets.redact(&body)))
}

/// [`gateway_status`] on any machine of the run: the gateway of `user` on
/// `port`; the body is not redacted.
pub fn gateway_status_on(
    m: &mut Machine,
    port: u16,
    user: &str,
    bearer: Bearer,
) -> Result<(String, String)> {
    let cfg = format!("/home/{user}/.openclaw/openclaw.json");
    let header = match bearer {
        Bearer::None => String::new(),
        Bearer::Wrong => {
            "-H 'Authorization: Bearer vmtest-not-the-gateway-token-0123456789'".into()
        }
        Bearer::Right => format!(
            "-H @<(printf 'Authorization: Bearer %s\\n' \"$(sed -n 's/.*\"token\": *\"\\([^\"]*\\)\".*/\\1/p' {cfg} | head -n1)\")"
        ),
    };
    let out = m.succeed(&format!(
        "body=$(mktemp); code=$(curl -s -o \"$body\" -w '%{{http_code}}' -m 20 -X POST -H 'Content-Type: application/json' \
         --data '{PROBE_BODY}' {header} http://127.0.0.1:{port}{PROBE_PATH} || true); \
         echo \"$code\"; head -c 300 \"$body\"; rm -f \"$body\""
    ))?;
    let (code, body) = out.split_once('\n').unwrap_or((out.as_str(), ""));
    Ok((code.trim().to_string(), body.trim().to_string()))
}

/// Whether an HTTP status (`000`: no answer) is the gateway refusing
/// authentication.
pub fn auth_refused(code: &str) -> bool {
    code == "401" || code == "403"
}

/// Whether an HTTP status shows the request got past the gateway's
/// authentication: any answer but 401/403/429 (rate-limited) or none.
pub fn past_auth(code: &str) -> bool {
    code.len() == 3 && !matches!(code, "000" | "401" | "403" | "429")
}

/// NET-7: a request without a token, or with a wrong one, is refused
/// (401/403); the gateway's token gets past authentication (any answer but
/// 401/403/429; the tool itself may still fail, as no model provider is
/// reachable).
pub fn net_7(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    // The right token first: failed attempts may be rate-limited (429),
    // which must not stand in for an accepted token.
    let (right, body) = gateway_status(ctx, Bearer::Right)?;
    let (anon, _) = gateway_status(ctx, Bearer::None)?;
    let (wrong, _) = gateway_status(ctx, Bearer::Wrong)?;
    let ok = auth_refused(&anon) && auth_refused(&wrong) && past_auth(&right);
    Ok(expect(
        ok,
        format!(
            "POST /tools/invoke without a token → {anon}; with a wrong token → {wrong}; \
             with the gateway's token → {right} {body}"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{TRUSTED_PROXIES, key_is};

    #[test]
    fn trusted_proxies_must_be_exactly_loopback() {
        let want = json!(TRUSTED_PROXIES);
        let check = |got: serde_json::Value| {
            let cfg = json!({"gateway": {"trustedProxies": got}});
            let mut seen = Vec::new();
            let ok = key_is(&cfg, "/gateway/trustedProxies", &want, &mut seen);
            (ok, seen.concat())
        };
        assert_eq!(
            check(json!(["127.0.0.1"])),
            (
                true,
                r#"ok  /gateway/trustedProxies = ["127.0.0.1"]"#.into()
            )
        );
        // NET-6's literal list: Serve clients would be unattributable (403).
        let (ok, line) = check(json!(["127.0.0.1", "100.64.0.0/10"]));
        assert!(!ok);
        assert!(line.starts_with("BAD ") && line.ends_with(r#"(want ["127.0.0.1"])"#));
        for bad in [
            json!(["100.64.0.0/10", "127.0.0.1"]),
            json!(["100.64.0.0/10"]),
            json!(["127.0.0.1", "127.0.0.1"]),
            json!(["127.0.0.0/8"]),
            json!(["::1"]),
            json!([]),
            json!("127.0.0.1"),
            json!(null),
        ] {
            assert!(!check(bad.clone()).0, "{bad} was accepted");
        }
        let unset = json!({"gateway": {}});
        assert!(!key_is(
            &unset,
            "/gateway/trustedProxies",
            &want,
            &mut Vec::new()
        ));
    }
}
