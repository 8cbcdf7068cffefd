//! ESC-4: the tools that run in the gateway process on the host are denied
//! to sandboxed sessions, in the config and in OpenClaw's own resolution of
//! it (`openclaw sandbox explain --json`).

use anyhow::Result;
use serde_json::Value;

use super::{Ctx, as_user};
use crate::suite::report::Outcome;

/// The host-side tools: the five ESC-4 names, then the pinned OpenClaw's
/// (2026.9.6) tools of the same kind — they act on the host, the gateway's
/// config, other sessions or paired devices rather than in the container
/// (docs/openclaw-config.md gives the reason for each).
pub const HOST_SIDE_TOOLS: &[&str] = &[
    "gateway",
    "cron",
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

/// A tool name as OpenClaw's policy compares it: lowercase, with its
/// permanent aliases resolved (`tool-policy-shared.ts`).
pub fn policy_name(name: &str) -> String {
    let lower = name.trim().to_lowercase();
    match lower.as_str() {
        "bash" => "exec".into(),
        "apply-patch" => "apply_patch".into(),
        "cron" => "automations".into(),
        _ => lower,
    }
}

/// Whether an allow/deny entry matches `tool` the way OpenClaw's
/// `glob-pattern.ts` does: `*` matches any run of characters, anything
/// else literally, after [`policy_name`] on both sides.
fn matches(pattern: &str, tool: &str) -> bool {
    let pattern = policy_name(pattern);
    let tool = policy_name(tool);
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == tool;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !tool.starts_with(first) || tool.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &tool[first.len()..tool.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    tool.ends_with(last)
}

/// The string entries of a JSON array at `pointer` (empty when absent).
fn strings<'a>(v: &'a Value, pointer: &str) -> Vec<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The config part: every host-side tool is named (or matched) in
/// `tools.sandbox.tools.deny` — a deny entry, unlike an allow list, keeps
/// the tool out whatever the allow list says. Returns the tools not denied.
pub fn config_undenied(config: &Value) -> Vec<&'static str> {
    let deny = strings(config, "/tools/sandbox/tools/deny");
    HOST_SIDE_TOOLS
        .iter()
        .copied()
        .filter(|t| !deny.iter().any(|p| matches(p, t)))
        .collect()
}

/// The live part, over `openclaw sandbox explain --json`: the session is
/// sandboxed and every host-side tool is blocked by the effective policy
/// (matched by `sandbox.tools.deny`, or missing from a non-empty
/// `sandbox.tools.allow` — OpenClaw's `classifyToolAgainstSandboxToolPolicy`).
/// `Ok` with a summary, or `Err` naming what is wrong.
pub fn explain_verdict(explained: &Value) -> Result<String, String> {
    if explained.pointer("/sandbox/sessionIsSandboxed") != Some(&Value::Bool(true)) {
        return Err(format!(
            "sandbox explain: the session {} is not sandboxed (sandbox.sessionIsSandboxed = {})",
            explained
                .pointer("/sessionKey")
                .and_then(Value::as_str)
                .unwrap_or("?"),
            explained
                .pointer("/sandbox/sessionIsSandboxed")
                .unwrap_or(&Value::Null)
        ));
    }
    let deny = strings(explained, "/sandbox/tools/deny");
    let allow = strings(explained, "/sandbox/tools/allow");
    let mut by_deny = Vec::new();
    let mut by_allow = Vec::new();
    let mut allowed = Vec::new();
    for tool in HOST_SIDE_TOOLS {
        if deny.iter().any(|p| matches(p, tool)) {
            by_deny.push(*tool);
        } else if !allow.is_empty() && !allow.iter().any(|p| matches(p, tool)) {
            by_allow.push(*tool);
        } else {
            allowed.push(*tool);
        }
    }
    let summary = format!(
        "sandbox explain ({}): denied {by_deny:?}; not in the allow list {by_allow:?}",
        explained
            .pointer("/sessionKey")
            .and_then(Value::as_str)
            .unwrap_or("?")
    );
    if allowed.is_empty() {
        Ok(summary)
    } else {
        Err(format!("{summary}; ALLOWED in the sandbox: {allowed:?}"))
    }
}

/// ESC-4 (config + live): the baked config denies every host-side tool,
/// and OpenClaw's own `sandbox explain`, run as the gateway user, shows
/// each blocked for the sandboxed main session. When the command cannot
/// answer, the case is not run (with its error), never passed.
pub fn esc_4(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    let config = super::net::openclaw_json(ctx)?;
    let undenied = config_undenied(&config);
    let mut lines = vec![format!(
        "tools.sandbox.tools.deny = {:?}",
        strings(&config, "/tools/sandbox/tools/deny")
    )];
    if !undenied.is_empty() {
        lines.push(format!("NOT denied in the config: {undenied:?}"));
    }
    let out = ctx
        .machine
        .run(&as_user(ctx, "openclaw sandbox explain --json"))?;
    let explained: Option<Value> = (out.status == 0)
        .then(|| serde_json::from_str(&out.stdout_text()).ok())
        .flatten();
    let Some(explained) = explained else {
        let why = command_failure(out.status, &out.stderr_text(), &out.stdout_text());
        if undenied.is_empty() {
            return Ok(Outcome::NotRun(format!(
                "{}\nlive part not obtained: {why}",
                lines.join("\n")
            )));
        }
        lines.push(why);
        return Ok(Outcome::Fail(lines.join("\n")));
    };
    let live = explain_verdict(&explained);
    let ok = undenied.is_empty() && live.is_ok();
    lines.push(live.unwrap_or_else(|e| e));
    Ok(super::expect(ok, lines.join("\n")))
}

/// Why `openclaw sandbox explain --json` gave no JSON: exit status and the
/// first lines of its output.
pub fn command_failure(status: i32, stderr: &str, stdout: &str) -> String {
    format!(
        "`openclaw sandbox explain --json` gave no JSON (exit {status}): {}",
        stderr
            .lines()
            .chain(stdout.lines())
            .filter(|l| !l.trim().is_empty())
            .take(4)
            .collect::<Vec<_>>()
            .join(" | ")
    )
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::{config_undenied, explain_verdict, matches};

    /// `openclaw sandbox explain --json` of the appliance's config, as the
    /// pinned OpenClaw 2026.9.6 printed it (run on the build host; paths
    /// rewritten to the guest's).
    const EXPLAINED: &str = include_str!("testdata/sandbox-explain-2026.9.6.json");
    /// The same for the seed's config (allow with `group:automation` and
    /// `group:nodes`, no deny): OpenClaw's default deny list is lifted.
    const EXPLAINED_BEFORE: &str =
        include_str!("testdata/sandbox-explain-2026.9.6-before-esc4.json");

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).expect("fixture is JSON")
    }

    #[test]
    fn globs_and_aliases_match_as_openclaw_does() {
        for (pattern, tool, want) in [
            ("cron", "automations", true),
            ("automations", "cron", true),
            ("CRON", "cron", true),
            ("*", "gateway", true),
            ("sessions_*", "sessions_spawn", true),
            ("*_send", "sessions_send", true),
            ("s*s*n", "sessions_spawn", true),
            ("sessions_*", "session_status", false),
            ("gate", "gateway", false),
            ("bash", "exec", true),
        ] {
            assert_eq!(matches(pattern, tool), want, "{pattern} ~ {tool}");
        }
    }

    #[test]
    fn the_appliance_config_passes_both_parts() {
        let explained = parse(EXPLAINED);
        let verdict = explain_verdict(&explained);
        assert!(verdict.is_ok(), "{verdict:?}");
        let deny = explained["sandbox"]["tools"]["deny"].clone();
        assert!(
            config_undenied(&json!({"tools": {"sandbox": {"tools": {"deny": deny}}}})).is_empty()
        );
    }

    #[test]
    fn the_seed_config_fails_on_the_control_plane_tools() {
        let err = explain_verdict(&parse(EXPLAINED_BEFORE)).expect_err("seed allowed them");
        for tool in [
            "gateway",
            "cron",
            "nodes",
            "sessions_spawn",
            "sessions_send",
        ] {
            assert!(err.contains(&format!("\"{tool}\"")), "{tool}: {err}");
        }
        let seed = json!({"tools": {"sandbox": {"tools": {"allow": ["group:automation"]}}}});
        assert_eq!(config_undenied(&seed).len(), super::HOST_SIDE_TOOLS.len());
    }

    #[test]
    fn an_allow_list_without_the_tool_blocks_it_too() {
        let v = json!({
            "sessionKey": "agent:main:main",
            "sandbox": {"sessionIsSandboxed": true,
                        "tools": {"allow": ["exec", "read"], "deny": []}}
        });
        let ok = explain_verdict(&v).expect("blocked by allow");
        assert!(ok.contains("not in the allow list"), "{ok}");
    }

    #[test]
    fn one_tool_missing_from_deny_and_present_in_allow_fails() {
        let mut v = parse(EXPLAINED);
        v["sandbox"]["tools"]["deny"] = json!(["gateway", "automations", "nodes"]);
        let err = explain_verdict(&v).expect_err("sessions_* allowed");
        assert!(
            err.contains("sessions_spawn") && err.contains("sessions_send"),
            "{err}"
        );
        assert!(
            config_undenied(&json!({"tools": {"sandbox": {"tools": {"deny": ["gateway"]}}}}))
                .contains(&"sessions_send")
        );
    }

    #[test]
    fn an_unsandboxed_session_fails() {
        let mut v = parse(EXPLAINED);
        v["sandbox"]["sessionIsSandboxed"] = json!(false);
        let err = explain_verdict(&v).expect_err("not sandboxed");
        assert!(err.contains("not sandboxed"), "{err}");
    }

    #[test]
    fn a_wildcard_deny_blocks_everything() {
        let v = json!({"sandbox": {"sessionIsSandboxed": true,
                                   "tools": {"allow": [], "deny": ["*"]}}});
        assert!(explain_verdict(&v).is_ok());
    }
}
