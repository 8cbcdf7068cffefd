//! NET-1..3, NET-6..8, TS-1: firewall, listeners, gateway config and auth.

use anyhow::{Context, Result};
use serde_json::Value;

use super::{Ctx, as_user, expect};
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

/// NET-2: every ALLOW IN rule is on `tailscale0`, for v4 and v6; nothing opens 22.
pub fn net_2(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    let status = ufw_status(ctx)?;
    let rules: Vec<&str> = status
        .lines()
        .skip_while(|l| !l.starts_with("--"))
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .collect();
    let allows: Vec<&str> = rules
        .iter()
        .copied()
        .filter(|r| r.contains("ALLOW"))
        .collect();
    let stray: Vec<&str> = allows
        .iter()
        .copied()
        .filter(|r| !r.contains("on tailscale0"))
        .collect();
    let v4 = allows
        .iter()
        .any(|r| r.contains("on tailscale0") && !r.contains("(v6)"));
    let v6 = allows
        .iter()
        .any(|r| r.contains("on tailscale0") && r.contains("(v6)"));
    let ssh = rules.iter().any(|r| {
        r.split_whitespace()
            .next()
            .is_some_and(|p| p.starts_with("22"))
    });
    let detail = format!("rules:\n{}", rules.join("\n"));
    Ok(expect(stray.is_empty() && v4 && v6 && !ssh, detail))
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
            serde_json::json!(["127.0.0.1", "100.64.0.0/10"]),
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
    seen.push(if ctx.facts.tailscale {
        "gateway.tailscale.mode = off: Serve is configured by root at first boot (TS-2); NET-8 checks its route".into()
    } else {
        "not applicable: Serve (no Tailscale in this image)".to_string()
    });
    Ok(expect(ok, seen.join("\n")))
}

/// The bearer token a NET-7 request carries.
#[derive(Clone, Copy)]
enum Bearer {
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
    let port = ctx.facts.port;
    let cfg = format!("/home/{}/.openclaw/openclaw.json", ctx.facts.user);
    let header = match bearer {
        Bearer::None => String::new(),
        Bearer::Wrong => {
            "-H 'Authorization: Bearer vmtest-not-the-gateway-token-0123456789'".into()
        }
        Bearer::Right => format!(
            "-H @<(printf 'Authorization: Bearer %s\\n' \"$(sed -n 's/.*\"token\": *\"\\([^\"]*\\)\".*/\\1/p' {cfg} | head -n1)\")"
        ),
    };
    let out = ctx.machine.succeed(&format!(
        "body=$(mktemp); code=$(curl -s -o \"$body\" -w '%{{http_code}}' -m 20 -X POST -H 'Content-Type: application/json' \
         --data '{{\"tool\":\"sessions_list\",\"args\":{{}}}}' {header} http://127.0.0.1:{port}/tools/invoke || true); \
         echo \"$code\"; head -c 300 \"$body\"; rm -f \"$body\""
    ))?;
    let (code, body) = out.split_once('\n').unwrap_or((out.as_str(), ""));
    Ok((code.trim().to_string(), ctx.secrets.redact(body.trim())))
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
    let refused = |c: &str| c == "401" || c == "403";
    let past_auth = right.len() == 3 && !matches!(right.as_str(), "000" | "401" | "403" | "429");
    let ok = refused(&anon) && refused(&wrong) && past_auth;
    Ok(expect(
        ok,
        format!(
            "POST /tools/invoke without a token → {anon}; with a wrong token → {wrong}; \
             with the gateway's token → {right} {body}"
        ),
    ))
}

/// NET-8: `tailscale serve status` proxies to the gateway, Funnel off.
pub fn net_8(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    if !ctx.facts.tailscale {
        return Ok(Outcome::NotRun(
            "Tailscale is not in this image (its package server is unreachable from the build host)".into(),
        ));
    }
    let status = ctx.machine.succeed("tailscale serve status --json")?;
    let ok = status.contains(&format!("127.0.0.1:{}", ctx.facts.port))
        && !status.contains("\"AllowFunnel\": {\n");
    Ok(expect(ok, status))
}

/// TS-1: Tailscale preinstalled at the pinned version, enabled, state dir 700.
pub fn ts_1(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    if !ctx.facts.tailscale {
        return Ok(Outcome::NotRun(
            "Tailscale is not in this image (its package server is unreachable from the build host; \
             supply it with `cargo xtask fetch --input-dir`)"
                .into(),
        ));
    }
    let want = ctx.facts.manifest_str("/tailscale/version");
    let version = ctx.machine.succeed("tailscale version | head -n1")?;
    let enabled = ctx.machine.succeed("systemctl is-enabled tailscaled")?;
    let mode = ctx.machine.succeed("stat -c %a /var/lib/tailscale")?;
    let operator = ctx
        .machine
        .execute("tailscale debug prefs 2>/dev/null | grep -i operator")?
        .1;
    let ok = version.trim() == want && enabled.trim() == "enabled" && mode.trim() == "700";
    Ok(expect(
        ok,
        format!(
            "version {} (want {want}); tailscaled {}; /var/lib/tailscale {}; {}",
            version.trim(),
            enabled.trim(),
            mode.trim(),
            operator.trim()
        ),
    ))
}

/// The reconfigurations TS-2 tries as the gateway user, `{port}` the
/// gateway's port: each must be refused.
const TS_2_ATTEMPTS: &[&str] = &[
    "tailscale funnel --bg --yes --https=443 http://127.0.0.1:{port}",
    "tailscale serve reset",
    "tailscale set --advertise-routes=10.0.0.0/8",
    "tailscale set --advertise-exit-node",
    "tailscale set --ssh=false",
];

/// Whether an attempt was refused: a non-zero exit that is not the CLI
/// rejecting its own arguments (a usage error would pass for the wrong
/// reason).
fn refused(status: i32, output: &str) -> bool {
    let lower = output.to_lowercase();
    let usage = [
        "flag provided but not defined",
        "invalid argument",
        "usage:",
        "unknown subcommand",
    ]
    .iter()
    .any(|u| lower.contains(u));
    status != 0 && !usage
}

/// Why TS-2 cannot be run on this machine, if it cannot: no Tailscale in
/// the image, `tailscaled` not active, or not logged in (an unconnected
/// daemon refuses everything, which would prove nothing).
fn ts_2_precondition(tailscale: bool, active: &str, status_json: &str) -> Option<String> {
    if !tailscale {
        return Some("Tailscale is not in this image".into());
    }
    if active.trim() != "active" {
        return Some(format!("tailscaled is {}, not active", active.trim()));
    }
    let state = serde_json::from_str::<Value>(status_json)
        .ok()
        .and_then(|v| v.get("BackendState")?.as_str().map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    (state != "Running")
        .then(|| format!("tailscaled is not logged in to a tailnet (BackendState {state})"))
}

/// TS-2: as `openclaw`, Funnel, a Serve reset, advertised routes, an exit
/// node and turning Tailscale SSH off are all refused. Not run (never
/// passed) without a logged-in Tailscale. Should one succeed, root puts
/// back what first boot set.
pub fn ts_2(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    let (_, active) = ctx
        .machine
        .execute("systemctl is-active tailscaled 2>/dev/null || true")?;
    let (_, status) = ctx
        .machine
        .execute("tailscale status --json 2>/dev/null || true")?;
    if let Some(why) = ts_2_precondition(ctx.facts.tailscale, &active, &status) {
        return Ok(Outcome::NotRun(format!(
            "{why}: openclaw's Tailscale rights cannot be tried"
        )));
    }
    let port = ctx.facts.port;
    let user = ctx.facts.user.clone();
    let mut lines = Vec::new();
    let mut all_refused = true;
    for attempt in TS_2_ATTEMPTS {
        let command = attempt.replace("{port}", &port.to_string());
        let out = ctx.machine.run(&format!(
            "runuser -u {user} -- timeout 30 {command} 2>&1 </dev/null"
        ))?;
        let text = out.stdout_text();
        let ok = refused(out.status, &text);
        all_refused &= ok;
        lines.push(format!(
            "{} as {user}: `{command}`: exit {}: {}",
            if ok { "refused" } else { "NOT REFUSED" },
            out.status,
            text.lines().take(2).collect::<Vec<_>>().join(" | ")
        ));
    }
    if !all_refused {
        ctx.machine.succeed(&format!(
            "tailscale serve reset && tailscale set --advertise-routes= --advertise-exit-node=false --ssh && \
             tailscale serve --bg --yes --https=443 http://127.0.0.1:{port}"
        ))?;
        lines.push(
            "restored as root: Serve to the gateway, no routes, no exit node, Tailscale SSH on"
                .into(),
        );
    }
    Ok(expect(all_refused, lines.join("\n")))
}

#[cfg(test)]
mod tests {
    use super::{refused, ts_2_precondition};

    #[test]
    fn a_refusal_is_a_failure_that_is_not_a_usage_error() {
        assert!(refused(1, "Access denied: prefs write access denied\n"));
        assert!(!refused(0, ""));
        assert!(!refused(
            2,
            "flag provided but not defined: -advertise-exit-nod\n"
        ));
        assert!(!refused(1, "Usage: tailscale set [flags]\n"));
    }

    #[test]
    fn ts_2_runs_only_on_a_logged_in_tailscale() {
        let running = r#"{"BackendState": "Running", "Self": {}}"#;
        assert!(
            ts_2_precondition(false, "active", running)
                .unwrap()
                .contains("not in this image")
        );
        assert!(
            ts_2_precondition(true, "inactive\n", running)
                .unwrap()
                .contains("inactive")
        );
        assert!(
            ts_2_precondition(true, "active\n", r#"{"BackendState": "NeedsLogin"}"#)
                .unwrap()
                .contains("NeedsLogin")
        );
        assert!(
            ts_2_precondition(true, "active", "")
                .unwrap()
                .contains("unknown")
        );
        assert_eq!(ts_2_precondition(true, "active\n", running), None);
    }
}
