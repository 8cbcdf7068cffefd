//! `~openclaw/.openclaw/openclaw.json`: the defaults of NET-6, AGT-1, NODE-1
//! and SUP-2, with no secret (the token arrives at first boot). Modes per SRV-5.

use image_spec::Spec;
use image_spec::spec::Bind;
use serde_json::{Value, json};

use super::Context;
use crate::tree::Tree;

pub(super) fn render(tree: &mut Tree, spec: &Spec, ctx: &Context) {
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
    let mut text =
        serde_json::to_string_pretty(&openclaw_json(spec, ctx.tailscale)).unwrap_or_default();
    text.push('\n');
    tree.owned_file(
        &format!("{home}/.openclaw/openclaw.json"),
        0o600,
        user.uid,
        user.gid,
        text,
    );
}

/// The baked config. `tailscale` says whether the image has Tailscale: without
/// its binary the gateway refuses to start in Serve mode, so Serve is off then.
pub fn openclaw_json(spec: &Spec, tailscale: bool) -> Value {
    let g = &spec.gateway;
    let bind = match g.bind {
        Bind::Loopback => "loopback",
        Bind::Lan => "lan",
        Bind::Tailnet => "tailnet",
    };
    let serve = if g.tailscale_serve && tailscale {
        "serve"
    } else {
        "off"
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
            "tailscale": { "mode": serve },
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
                    },
                },
            },
        },
        "tools": {
            "exec": { "host": "sandbox" },
            "elevated": { "enabled": spec.features.elevated_tools },
            "sandbox": {
                "tools": {
                    "allow": ["group:runtime", "group:fs", "group:sessions", "group:memory", "group:web", "group:ui", "group:automation", "group:messaging", "group:nodes"],
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
