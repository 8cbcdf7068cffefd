//! `~openclaw/.openclaw/openclaw.json`: the defaults of NET-6, AGT-1, ESC-3,
//! ESC-4, NODE-1 and SUP-2, with no secret (the token arrives at first boot).
//! Modes per SRV-5.

use image_spec::Spec;
use image_spec::spec::Bind;
use serde_json::{Value, json};

use crate::tree::Tree;

pub(super) fn render(tree: &mut Tree, spec: &Spec) {
    let user = spec.gateway_user();
    let home = format!("home/{}", user.name);
    tree.dir(&home, 0o700, user.uid, user.gid);
    tree.dir(&format!("{home}/.openclaw"), 0o700, user.uid, user.gid);
    tree.dir(
        &format!("{home}/.openclaw/credentials"),
        0o700,
        user.uid,
        user.gid,
    );
    let mut text = serde_json::to_string_pretty(&openclaw_json(spec)).unwrap_or_default();
    text.push('\n');
    tree.owned_file(
        &format!("{home}/.openclaw/openclaw.json"),
        0o600,
        user.uid,
        user.gid,
        text,
    );
}

/// The tool groups a sandboxed session may use (AGT-1): OpenClaw's standard
/// groups without `group:automation` and `group:nodes`, whose tools are all
/// host-side but `heartbeat_respond`, which is listed by name. Host-side
/// tools inside the other groups are taken out by [`HOST_SIDE_TOOLS`]
/// (deny wins over allow in OpenClaw's sandbox tool policy).
pub const SANDBOX_TOOLS_ALLOW: [&str; 8] = [
    "group:fs",
    "group:runtime",
    "group:web",
    "group:memory",
    "group:sessions",
    "group:ui",
    "group:messaging",
    "heartbeat_respond",
];

/// The tools that run in the gateway process on the host, or act on the
/// host, the gateway's config, other sessions or paired devices instead of
/// inside the sandbox container: denied to sandboxed sessions (ESC-4). The
/// first five are OpenClaw's own advice for untrusted content
/// (`docs/gateway/security/tool-permissions.md`, "Control plane tools");
/// the rest are the pinned OpenClaw's tools of the same kind, found in its
/// tool catalog (`docs/openclaw-config.md` lists each with the reason). `cron` is
/// the permanent alias of `automations`; both are named so that either
/// spelling is found. An explicit deny list replaces OpenClaw's default
/// sandbox deny list, so that list's tools (`browser`, `canvas`,
/// `computer`, `mobile_ui`, `nodes`, `automations`, `gateway`) are here too.
pub const HOST_SIDE_TOOLS: [&str; 15] = [
    "gateway",
    "cron",
    "automations",
    "nodes",
    "sessions_spawn",
    "sessions_send",
    "openclaw",
    "plugins",
    "skill_workshop",
    "terminal",
    "portal",
    "browser",
    "canvas",
    "computer",
    "mobile_ui",
];

/// The baked config. The gateway never manages Tailscale Serve itself
/// (`gateway.tailscale.mode = off`): first boot, as root, points Serve at
/// the gateway's loopback port instead, so that `openclaw` needs no
/// operator right on `tailscaled` (TS-2, NET-6).
pub fn openclaw_json(spec: &Spec) -> Value {
    let g = &spec.gateway;
    let bind = match g.bind {
        Bind::Loopback => "loopback",
        Bind::Lan => "lan",
        Bind::Tailnet => "tailnet",
    };
    let s = &spec.sandbox;
    let plugins: Vec<&str> = spec.openclaw.plugins.iter().map(|p| p.as_str()).collect();
    let mut config = json!({
        "gateway": {
            "mode": "local",
            "bind": bind,
            "port": g.port,
            "auth": {
                "mode": "token",
                "allowTailscale": g.allow_tailscale,
            },
            "trustedProxies": g.trusted_proxies,
            "tailscale": { "mode": "off" },
        },
        "update": { "checkOnStart": false },
        "agents": {
            "defaults": {
                "thinkingDefault": "high",
                "elevatedDefault": "off",
                "sandbox": {
                    "mode": "all",
                    "workspaceAccess": s.workspace_access,
                    "docker": {
                        "image": s.image,
                        "network": s.network,
                        "readOnlyRoot": s.read_only_root,
                        // ESC-3: no swap, so memorySwap equals memory.
                        "pidsLimit": s.pids_limit,
                        "memory": s.memory,
                        "memorySwap": s.memory,
                        "cpus": s.cpus,
                    },
                },
            },
        },
        "tools": {
            "exec": { "host": "sandbox" },
            "elevated": { "enabled": spec.features.elevated_tools },
            "sandbox": {
                "tools": {
                    "allow": SANDBOX_TOOLS_ALLOW,
                    "deny": HOST_SIDE_TOOLS,
                },
            },
        },
        "plugins": { "allow": plugins },
    });
    // The default model, as OpenClaw's own onboarding sets it: without one,
    // OpenClaw's default provider (OpenAI) has no credentials on the
    // appliance, whose first boot installs an Anthropic token only.
    if let (Some(model), Some(defaults)) = (
        &spec.openclaw.model,
        config
            .pointer_mut("/agents/defaults")
            .and_then(Value::as_object_mut),
    ) {
        defaults.insert("model".into(), json!({ "primary": model }));
    }
    config
}
