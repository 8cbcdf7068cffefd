//! ESC-4: the tools that run in the gateway process on the host are denied
//! to sandboxed sessions, in the config and in OpenClaw's own resolution of
//! it (`openclaw sandbox explain --json`).

use anyhow::Result;
use serde_json::Value;

use super::{Ctx, as_user};
use crate::suite::report::Outcome;
use hostutil::shell_quote;

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
    let out = super::agt::sandbox_explain(ctx)?;
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

// ESC-1, ESC-3, ESC-5: the attacks themselves, as `openclaw` and from
// inside the sandbox, against the rootless sandbox daemon.

/// The groups among `groups` whose members can become root (ESC-1,
/// SRV-3), by [`ROOT_GROUPS`].
pub(crate) fn root_granting<'a>(groups: &[&'a str]) -> Vec<&'a str> {
    groups
        .iter()
        .copied()
        .filter(|g| ROOT_GROUPS.contains(g))
        .collect()
}

/// Groups whose members can become root (ESC-1, SRV-3; the spec refuses them).
const ROOT_GROUPS: &[&str] = &[
    "root",
    "docker",
    "sudo",
    "admin",
    "wheel",
    "adm",
    "disk",
    "lxd",
    "incus-admin",
    "shadow",
];

/// Root-owned container daemon sockets that must not answer `openclaw`.
const ROOT_SOCKETS: &[&str] = &[
    "/run/docker.sock",
    "/var/run/docker.sock",
    "/run/containerd/containerd.sock",
    "/run/podman/podman.sock",
    "/var/snap/lxd/common/lxd/unix.socket",
    "/run/crio/crio.sock",
];

/// Host directories a privileged container of `openclaw`'s tries to write
/// into through `-v /:/host` (relative to `/`).
const ROOT_DIRS: &[&str] = &["etc", "usr/local/bin", "var/lib", "root", "boot", "opt"];

/// Where root reads configuration or code: nothing under them may be
/// writable by `openclaw` (ESC-1).
const ROOT_READ_PATHS: &[&str] = &[
    "/etc",
    "/usr",
    "/boot",
    "/opt",
    "/var/lib/systemd",
    "/var/lib/openclaw-appliance",
    "/run/systemd",
];

/// The set-id files allowed on the host, each justified in
/// `docs/security.md` (Debian's own; none is the gateway's).
pub const SETID_ALLOWLIST: &[&str] = &[
    "/usr/bin/chage",
    "/usr/bin/chfn",
    "/usr/bin/chsh",
    "/usr/bin/expiry",
    "/usr/bin/gpasswd",
    "/usr/bin/mount",
    "/usr/bin/newgidmap",
    "/usr/bin/newgrp",
    "/usr/bin/newuidmap",
    "/usr/bin/passwd",
    "/usr/bin/ssh-agent",
    "/usr/bin/su",
    "/usr/bin/umount",
    "/usr/lib/dbus-1.0/dbus-daemon-launch-helper",
    "/usr/lib/openssh/ssh-keysign",
    "/usr/sbin/unix_chkpwd",
];

/// The name of the privileged container ESC-1 starts as `openclaw`.
const ESC1_CONTAINER: &str = "vmtest-esc1-priv";

/// ESC-1's attack, run as `openclaw`: the root daemons' sockets, then a
/// privileged container with the host's `/` mounted that writes `marker`
/// into root-owned directories and stays up so the host can see its uid.
fn esc1_attack_script(image: &str, marker: &str) -> String {
    let mut s = String::from("echo \"groups: $(id -nG)\"\n");
    for sock in ROOT_SOCKETS {
        s.push_str(&format!(
            "if [ -e {sock} ]; then if docker -H unix://{sock} version >/dev/null 2>&1; then \
             echo 'ROOT-DAEMON {sock} answers'; else echo 'root daemon {sock}: refused'; fi; fi\n"
        ));
    }
    let writes: String = ROOT_DIRS
        .iter()
        .map(|d| {
            format!(
                "touch /host/{d}/{marker} 2>/dev/null && echo 'container wrote /{d}/{marker}'; "
            )
        })
        .collect();
    s.push_str(&format!(
        "docker rm -f {ESC1_CONTAINER} >/dev/null 2>&1 || true\n\
         docker run -d --name {ESC1_CONTAINER} --privileged --user 0 --network none -v /:/host \
         --entrypoint sh {image} -c {script} >/dev/null\n\
         sleep 3\n\
         docker logs {ESC1_CONTAINER} 2>&1\n",
        image = shell_quote(image),
        script = shell_quote(&format!("id -u; {writes}sleep 300")),
    ));
    s
}

/// ESC-1's host-side view, as root: markers that reached the host, the
/// privileged container's uid on the host, files `openclaw` can write
/// where root reads, and the set-id files.
fn esc1_host_script(marker: &str) -> String {
    let mut s = String::new();
    for d in ROOT_DIRS {
        s.push_str(&format!(
            "if [ -e /{d}/{marker} ]; then echo 'HOST-MARKER /{d}/{marker}'; rm -f /{d}/{marker}; fi\n"
        ));
    }
    s.push_str(&format!(
        "pid=$(docker inspect -f '{{{{.State.Pid}}}}' {ESC1_CONTAINER} 2>/dev/null || echo 0)\n\
         if [ \"$pid\" != 0 ] && [ -e /proc/$pid/status ]; then \
         echo \"CONTAINER-UID $(awk '/^Uid:/ {{print $2}}' /proc/$pid/status)\"; \
         else echo 'CONTAINER-UID none'; fi\n\
         docker rm -f {ESC1_CONTAINER} >/dev/null 2>&1 || true\n"
    ));
    s
}

/// The `WRITABLE` lines of the paths under [`ROOT_READ_PATHS`] that
/// `openclaw` can write (run as `openclaw`).
fn writable_script() -> String {
    format!(
        "find {} -xdev \\( -type f -o -type d \\) -writable 2>/dev/null | head -n 20 | sed 's/^/WRITABLE /' || true",
        ROOT_READ_PATHS.join(" ")
    )
}

/// ESC-1's verdict from the attack's and the host's output lines: the
/// problems found (none: pass) and what was seen.
fn judge_esc1(attack: &str, host: &str, writable: &str, setid: &str) -> (Vec<String>, Vec<String>) {
    let mut problems = Vec::new();
    let mut seen = Vec::new();
    let groups: Vec<&str> = attack
        .lines()
        .find_map(|l| l.strip_prefix("groups: "))
        .map(|g| g.split_whitespace().collect())
        .unwrap_or_default();
    let bad = root_granting(&groups);
    if !bad.is_empty() {
        problems.push(format!("openclaw is in root-granting groups {bad:?}"));
    }
    seen.push(format!("groups {groups:?}"));
    for l in attack.lines().filter(|l| l.starts_with("ROOT-DAEMON")) {
        problems.push(l.to_string());
    }
    let wrote: Vec<&str> = attack
        .lines()
        .filter(|l| l.starts_with("container wrote"))
        .collect();
    seen.push(format!(
        "privileged container with / mounted, as its uid 0: {} (writes inside the daemon's namespace only count if the host sees them)",
        if wrote.is_empty() {
            "wrote nothing".to_string()
        } else {
            wrote.join(", ")
        }
    ));
    for l in host.lines().filter(|l| l.starts_with("HOST-MARKER")) {
        problems.push(format!("the host has the container's marker: {l}"));
    }
    match host.lines().find_map(|l| l.strip_prefix("CONTAINER-UID ")) {
        Some("none") | None => problems
            .push("the privileged container did not run, so host uid 0 was not tried".into()),
        Some("0") => problems.push("the privileged container's uid 0 is root on the host".into()),
        Some(uid) => seen.push(format!("its uid 0 is uid {uid} on the host")),
    }
    let writable: Vec<&str> = writable
        .lines()
        .filter_map(|l| l.strip_prefix("WRITABLE "))
        .collect();
    if !writable.is_empty() {
        problems.push(format!("openclaw can write where root reads: {writable:?}"));
    }
    seen.push(format!(
        "nothing under {ROOT_READ_PATHS:?} writable by openclaw: {}",
        writable.is_empty()
    ));
    let extra: Vec<&str> = setid
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !SETID_ALLOWLIST.contains(l))
        .collect();
    if !extra.is_empty() {
        problems.push(format!("set-id files outside the allowlist: {extra:?}"));
    }
    seen.push(format!(
        "{} set-id files, all allowlisted: {}",
        setid.lines().count(),
        extra.is_empty()
    ));
    (problems, seen)
}

/// ESC-1 (live): as `openclaw`, every root daemon socket refuses it, and a
/// privileged container with the host's `/` mounted, on the daemon it can
/// reach, writes no root-owned host file and is not uid 0 on the host;
/// nothing root reads is writable by it; set-id files are only the
/// allowlisted ones.
pub fn esc_1(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    if let Some(outcome) = super::agt::docker_gate(ctx)? {
        return Ok(outcome);
    }
    let marker = format!(
        "vmtest-esc1-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let image = ctx.facts.sandbox_image.clone();
    let (_, attack) = ctx
        .machine
        .execute(&as_user(ctx, &esc1_attack_script(&image, &marker)))?;
    let host = ctx.machine.succeed(&esc1_host_script(&marker))?;
    let writable = ctx.machine.succeed(&as_user(ctx, &writable_script()))?;
    let setid = ctx
        .machine
        .succeed("find / -xdev -type f -perm /6000 2>/dev/null | sort || true")?;
    let (problems, seen) = judge_esc1(&attack, &host, &writable, &setid);
    Ok(if problems.is_empty() {
        Outcome::Pass(seen.join("\n"))
    } else {
        Outcome::Fail(format!("{}\n{}", problems.join("\n"), seen.join("\n")))
    })
}

/// How long ESC-3 watches the gateway while the sandbox is under attack.
const ESC3_WATCH_ROUNDS: u32 = 10;
/// The slowest `/health` answer ESC-3 accepts, in milliseconds.
const ESC3_MAX_MS: u64 = 10_000;

/// ESC-3's attack, started detached inside the sandbox as its user: a
/// fork bomb, a memory hog and four busy loops.
const ESC3_ATTACK: &str = "for i in 1 2 3 4; do (while :; do :; done) & done; \
    python3 -c 'b=[]\nwhile True: b.append(bytearray(64 << 20))' & \
    f() { f | f & }; f";

/// Polls the gateway's `/health` from the host: one `HEALTH <code> <ms>`
/// line per round.
fn health_watch_script(port: u16) -> String {
    format!(
        "for i in $(seq {ESC3_WATCH_ROUNDS}); do s=$(date +%s%N); \
         c=$(curl -s -m {max} -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{port}/health || true); \
         e=$(date +%s%N); echo \"HEALTH $c $(( (e - s) / 1000000 ))\"; sleep 2; done",
        max = ESC3_MAX_MS / 1000
    )
}

/// ESC-3's verdict on the watch: every round 200 within [`ESC3_MAX_MS`].
fn judge_health(watch: &str) -> std::result::Result<String, String> {
    let rounds: Vec<(String, u64)> = watch
        .lines()
        .filter_map(|l| {
            let mut p = l.strip_prefix("HEALTH ")?.split_whitespace();
            Some((p.next()?.to_string(), p.next()?.parse().ok()?))
        })
        .collect();
    let slowest = rounds.iter().map(|r| r.1).max().unwrap_or(0);
    let bad: Vec<String> = rounds
        .iter()
        .filter(|(code, ms)| code != "200" || *ms > ESC3_MAX_MS)
        .map(|(code, ms)| format!("{code} in {ms} ms"))
        .collect();
    let summary = format!(
        "/health {} times during the attack, slowest {slowest} ms",
        rounds.len()
    );
    if rounds.len() as u32 != ESC3_WATCH_ROUNDS || !bad.is_empty() {
        Err(format!("{summary}; bad answers: {bad:?}"))
    } else {
        Ok(summary)
    }
}

/// The limits a cgroup v2 directory must hold: `pids.max`, `memory.max`
/// and `cpu.max`'s quota are not `max`, and `memory.swap.max` is 0 (the
/// appliance has a swap file: a sandbox allowed to swap would page the
/// host's services out instead of being killed at its limit).
fn limits_problems(pids: &str, memory: &str, swap: &str, cpu: &str) -> Vec<String> {
    // No value, no limit, or no file (ESC-3's read prints `missing`).
    let unset = |v: &str| ["", "max", "missing"].contains(&v);
    let mut out = Vec::new();
    if swap.trim() != "0" {
        out.push(format!("memory.swap.max is {:?}, not 0", swap.trim()));
    }
    if unset(pids.trim()) {
        out.push(format!("pids.max is {:?}", pids.trim()));
    }
    if unset(memory.trim()) {
        out.push(format!("memory.max is {:?}", memory.trim()));
    }
    // cpu.max is "QUOTA PERIOD": the quota is the limit.
    if unset(cpu.split_whitespace().next().unwrap_or("")) {
        out.push(format!("cpu.max is {:?}", cpu.trim()));
    }
    out
}

/// ESC-3 (live): the gateway's own sandbox container has pids, memory and
/// CPU limits; a fork bomb, a memory hog and busy loops inside it leave the
/// gateway answering `/health` within 10 s and the host's services up.
/// The container is restarted afterwards (that ends the attack).
pub fn esc_3(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    if let Some(outcome) = super::agt::docker_gate(ctx)? {
        return Ok(outcome);
    }
    let sb = match super::agt::sandbox(ctx)? {
        Ok(sb) => sb,
        Err(why) => return Ok(Outcome::NotRun(why)),
    };
    let health = super::agt::gateway_health(ctx)?;
    if health != "200" {
        return Ok(Outcome::NotRun(format!(
            "the gateway does not answer /health ({health:?}) before the attack"
        )));
    }
    let name = shell_quote(&sb.name);
    let cgroup = ctx.machine.succeed(&format!(
        "pid=$(docker inspect -f '{{{{.State.Pid}}}}' {name}); \
         echo /sys/fs/cgroup$(cut -d: -f3 /proc/$pid/cgroup | head -n1)"
    ))?;
    let cgroup = cgroup.trim().to_string();
    let read = |file: &str| format!("cat {cgroup}/{file} 2>/dev/null || echo missing");
    let pids = ctx.machine.succeed(&read("pids.max"))?;
    let memory = ctx.machine.succeed(&read("memory.max"))?;
    let swap = ctx.machine.succeed(&read("memory.swap.max"))?;
    let cpu = ctx.machine.succeed(&read("cpu.max"))?;
    let mut problems = limits_problems(&pids, &memory, &swap, &cpu);
    let before = ctx
        .machine
        .succeed("grep -E '^(MemTotal|MemAvailable):' /proc/meminfo | tr -s ' ' | tr '\\n' ' '")?;
    ctx.machine.succeed(&format!(
        "docker exec -d {name} bash -c {}",
        shell_quote(ESC3_ATTACK)
    ))?;
    std::thread::sleep(std::time::Duration::from_secs(5));
    let watch = ctx.machine.succeed(&health_watch_script(ctx.facts.port))?;
    let hit = ctx.machine.succeed(&format!(
        "echo \"pids.events: $(cat {cgroup}/pids.events 2>/dev/null | tr '\\n' ' ')\"; \
         echo \"memory.events: $(grep -E '^(max|oom_kill) ' {cgroup}/memory.events 2>/dev/null | tr '\\n' ' ')\"; \
         echo \"load: $(cut -d' ' -f1-3 /proc/loadavg)\"; \
         echo \"host $(grep MemAvailable /proc/meminfo | tr -s ' ')\""
    ))?;
    // The attack ends with the container's processes; OpenClaw's container
    // itself stays (restarted, same configuration).
    ctx.machine
        .succeed(&format!("docker restart -t 1 {name} >/dev/null"))?;
    let services = ctx.machine.succeed(
        "systemctl is-active openclaw-gateway.service systemd-journald.service systemd-networkd.service \
         | tr '\\n' ' '; echo; systemctl list-units --failed --no-legend --plain | tr '\\n' ' '",
    )?;
    let health_verdict = judge_health(&watch);
    if let Err(e) = &health_verdict {
        problems.push(e.clone());
    }
    let mut lines = services.lines();
    let active = lines.next().unwrap_or("").trim().to_string();
    let failed = lines.next().unwrap_or("").trim().to_string();
    if active.split_whitespace().any(|s| s != "active") || !failed.is_empty() {
        problems.push(format!(
            "host services after the attack: {active}; failed units: [{failed}]"
        ));
    }
    let seen = format!(
        "{}\nlimits in {cgroup}: pids.max {}, memory.max {}, memory.swap.max {}, cpu.max {}\nhost before the attack: {}\n{}\n{}\nhost services: {active}",
        sb.origin,
        pids.trim(),
        memory.trim(),
        swap.trim(),
        cpu.trim(),
        before.trim(),
        health_verdict.unwrap_or_else(|e| e),
        hit.trim()
    );
    Ok(if problems.is_empty() {
        Outcome::Pass(seen)
    } else {
        Outcome::Fail(format!("{}\n{seen}", problems.join("; ")))
    })
}

/// The host port ESC-5 publishes a container on.
const ESC5_PORT: u16 = 18_080;
/// The name of ESC-5's published container.
const ESC5_CONTAINER: &str = "vmtest-esc5-publish";

/// The Docker API sockets of root daemons ESC-5 tries besides the sandbox
/// daemon (`DOCKER_HOST`); `/var/run` is `/run` on Debian, so one path each.
const ROOT_DOCKER_APIS: &[&str] = &["/run/docker.sock", "/run/podman/podman.sock"];

/// The daemons `openclaw` can reach, as `docker` argument prefixes: its
/// own (`DOCKER_HOST`) first, then every root daemon that answers it.
fn reachable_daemons(ctx: &mut Ctx<'_>) -> Result<Vec<String>> {
    let probe: String = ROOT_DOCKER_APIS
        .iter()
        .map(|sock| {
            format!(
                "if [ -S {sock} ] && docker -H unix://{sock} version >/dev/null 2>&1; then echo unix://{sock}; fi\n"
            )
        })
        .collect();
    let out = ctx.machine.succeed(&as_user(ctx, &probe))?;
    let mut daemons = vec!["docker".to_string()];
    daemons.extend(out.lines().map(|l| format!("docker -H {}", l.trim())));
    Ok(daemons)
}

/// ESC-5 (live): against every daemon `openclaw` can reach, a port
/// published as `openclaw` (`-p 0.0.0.0:…`) answers on the host itself (the
/// publish worked) but not from the external peer; a container on the
/// "host" network still reaches neither the metadata service nor the
/// tailnet or private ranges (each shown reachable from the guest first).
pub fn esc_5(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    if let Some(outcome) = super::agt::docker_gate(ctx)? {
        return Ok(outcome);
    }
    let Some(net) = ctx.net else {
        return Ok(Outcome::NotRun(
            "no test network: no external peer to probe the published port from".into(),
        ));
    };
    let mut problems = Vec::new();
    let mut seen = Vec::new();
    for docker in reachable_daemons(ctx)? {
        let which = if docker == "docker" {
            "the sandbox daemon (DOCKER_HOST)".to_string()
        } else {
            format!(
                "a root daemon ({})",
                docker.trim_start_matches("docker -H ")
            )
        };
        seen.push(format!("daemon: {which}"));
        esc5_daemon(ctx, net, &docker, &which, &mut seen, &mut problems)?;
    }
    Ok(if problems.is_empty() {
        Outcome::Pass(seen.join("\n"))
    } else {
        Outcome::Fail(format!("{}\n{}", problems.join("; "), seen.join("\n")))
    })
}

/// ESC-5's two attacks through one daemon (`docker` is the command prefix
/// that reaches it). A root daemon's store lacks the sandbox image: the
/// attacker copies it over first, as `openclaw` can.
fn esc5_daemon(
    ctx: &mut Ctx<'_>,
    net: &crate::net::TestNet,
    docker: &str,
    which: &str,
    seen: &mut Vec<String>,
    problems: &mut Vec<String>,
) -> Result<()> {
    let image = shell_quote(&ctx.facts.sandbox_image);
    let (_, copied) = ctx.machine.execute(&as_user(
        ctx,
        &format!(
            "if ! {docker} image inspect {image} >/dev/null 2>&1; then \
             if out=$(set -o pipefail; docker save {image} | {docker} load 2>&1); then echo 'image copied into it'; \
             else echo \"copying the image into it failed: $(echo \"$out\" | tail -n 3)\"; fi; fi"
        ),
    ))?;
    if !copied.trim().is_empty() {
        seen.push(copied.trim().to_string());
    }
    let (status, out) = ctx.machine.execute(&as_user(
        ctx,
        &format!(
            "{docker} rm -f {ESC5_CONTAINER} >/dev/null 2>&1 || true; \
             {docker} run -d --name {ESC5_CONTAINER} -p 0.0.0.0:{ESC5_PORT}:8080 \
             --entrypoint python3 {image} -m http.server 8080 2>&1 >/dev/null"
        ),
    ))?;
    if status != 0 {
        // The sandbox daemon must run the image it was built with; a root
        // daemon that answers `openclaw` at all is a way around the firewall
        // (and ESC-1), whether or not this attempt got a container going.
        problems.push(format!(
            "{which}: `docker run -p` as openclaw failed (exit {status}), so the publish \
             could not be tried: {}",
            out.trim()
        ));
        return Ok(());
    }
    let local = ctx.machine.execute(&format!(
        "for i in $(seq 30); do c=$(curl -s -m 5 -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{ESC5_PORT}/ || true); \
         [ \"$c\" = 200 ] && break; sleep 2; done; echo $c"
    ))?;
    let guest = net.guest_ip(std::time::Duration::from_secs(60))?;
    let peer = net.peer_tcp(
        std::net::IpAddr::V4(guest),
        ESC5_PORT,
        std::time::Duration::from_secs(5),
    )?;
    ctx.machine.succeed(&as_user(
        ctx,
        &format!("{docker} rm -f {ESC5_CONTAINER} >/dev/null 2>&1 || true"),
    ))?;
    let local = local.1.trim().to_string();
    seen.push(format!(
        "published as openclaw on 0.0.0.0:{ESC5_PORT}: the host gets {local}, the external peer ({guest}) gets {}",
        peer.label()
    ));
    if local != "200" {
        problems.push(format!(
            "{which}: the publish did not answer on the host ({local}), so the peer's probe proves nothing"
        ));
    }
    if peer.label() == "open" {
        problems.push(format!(
            "{which}: the external peer reached the published port {ESC5_PORT}"
        ));
    }

    // A container on the daemon's "host" network, as openclaw.
    ctx.machine.succeed(super::agt::LAT_TEARDOWN)?;
    let peers = super::agt::lat_peers(ctx.tailnet.is_some());
    let setup = ctx.machine.succeed(&super::agt::lat_setup_script(&peers));
    let mut targets: Vec<(String, u16)> = peers
        .iter()
        .map(|p| (p.to_string(), super::agt::LAT_PORT))
        .collect();
    targets.push(("169.254.169.254".into(), 80));
    let script = super::agt::probe_script(&targets);
    let probes = setup.and_then(|_| {
        let base = ctx.machine.succeed(&script)?;
        let (_, inner) = ctx.machine.execute(&as_user(
            ctx,
            &format!(
                "{docker} run --rm --network host --entrypoint bash {image} -c {} 2>&1",
                shell_quote(&script)
            ),
        ))?;
        Ok((base, inner))
    });
    let teardown = ctx.machine.succeed(super::agt::LAT_TEARDOWN);
    let (base, inner) = probes?;
    teardown?;
    let base = super::agt::parse_probes(&base);
    let inner = super::agt::parse_probes(&inner);
    if inner.len() != targets.len() {
        problems.push(format!(
            "{which}: the host-network container answered {} of {} probes",
            inner.len(),
            targets.len()
        ));
    }
    for p in &inner {
        let from_guest = base
            .iter()
            .find(|b| b.host == p.host && b.port == p.port)
            .map_or("?", |b| b.verdict.as_str());
        seen.push(format!(
            "host-network container → {}:{} {} (from the guest as root: {from_guest})",
            p.host, p.port, p.verdict
        ));
        if p.answered() {
            problems.push(format!(
                "{which}: a host-network container reached {}:{}",
                p.host, p.port
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::{
        ESC3_WATCH_ROUNDS, config_undenied, explain_verdict, judge_esc1, judge_health,
        limits_problems, matches,
    };

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
        for (pattern, name, want) in [
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
            assert_eq!(matches(pattern, name), want, "{pattern} ~ {name}");
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
        for name in [
            "gateway",
            "cron",
            "nodes",
            "sessions_spawn",
            "sessions_send",
        ] {
            assert!(err.contains(&format!("\"{name}\"")), "{name}: {err}");
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

    #[test]
    fn esc1_passes_only_without_a_way_to_root() {
        let attack = "groups: openclaw\nroot daemon /run/containerd/containerd.sock: refused\n0\ncontainer wrote /etc/m\n";
        let host = "CONTAINER-UID 900\n";
        let setid = "/usr/bin/su\n/usr/bin/passwd\n";
        let (problems, seen) = judge_esc1(attack, host, "", setid);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(seen.iter().any(|l| l.contains("uid 900")), "{seen:?}");

        let cases = [
            (
                "groups: openclaw docker\n",
                host,
                "",
                setid,
                "root-granting",
            ),
            (
                "groups: openclaw\nROOT-DAEMON /run/docker.sock answers\n",
                host,
                "",
                setid,
                "ROOT-DAEMON",
            ),
            (
                attack,
                "HOST-MARKER /etc/m\nCONTAINER-UID 900\n",
                "",
                setid,
                "marker",
            ),
            (attack, "CONTAINER-UID 0\n", "", setid, "root on the host"),
            (attack, "CONTAINER-UID none\n", "", setid, "did not run"),
            (
                attack,
                host,
                "WRITABLE /etc/systemd/system\n",
                setid,
                "write where root reads",
            ),
            (attack, host, "", "/usr/local/bin/rootme\n", "allowlist"),
        ];
        for (a, h, w, s, want) in cases {
            let (problems, _) = judge_esc1(a, h, w, s);
            assert!(
                problems.iter().any(|p| p.contains(want)),
                "{want}: {problems:?}"
            );
        }
    }

    #[test]
    fn health_must_answer_every_round_in_time() {
        let good: String = (0..ESC3_WATCH_ROUNDS)
            .map(|i| format!("HEALTH 200 {}\n", 100 + i))
            .collect();
        assert!(judge_health(&good).is_ok());
        let slow = good.replacen("HEALTH 200 100", "HEALTH 200 10001", 1);
        assert!(judge_health(&slow).is_err());
        let down = good.replacen("HEALTH 200 100", "HEALTH 000 10002", 1);
        assert!(judge_health(&down).is_err());
        let short: String = good.lines().skip(1).map(|l| format!("{l}\n")).collect();
        assert!(judge_health(&short).is_err());
    }

    #[test]
    fn limits_must_all_be_set() {
        assert!(limits_problems("512", "1073741824", "0", "100000 100000").is_empty());
        assert_eq!(
            limits_problems("max", "1073741824", "0", "100000 100000").len(),
            1
        );
        assert_eq!(limits_problems("512", "max", "0", "max 100000").len(), 2);
        assert_eq!(limits_problems("missing", "", "0", "").len(), 3);
        // A sandbox that may swap: Docker's default for --memory alone.
        assert_eq!(
            limits_problems("512", "1073741824", "1073741824", "100000 100000"),
            ["memory.swap.max is \"1073741824\", not 0"]
        );
        assert_eq!(
            limits_problems("512", "1073741824", "missing", "100000 100000").len(),
            1
        );
    }
}
