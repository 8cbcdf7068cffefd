//! AGT-*, NODE-1, LAT-1: the agent sandbox.
//!
//! AGT-1 and NODE-1 read the gateway's `openclaw.json` (and, for NODE-1,
//! the file system); AGT-2 and AGT-3 inspect the sandbox image in the
//! guest's Docker. AGT-4, AGT-5, AGT-6 and LAT-1 probe a sandbox container
//! that OpenClaw's gateway created itself: an agent turn sent through the
//! gateway (`openclaw agent`) provisions the session's sandbox before any
//! model is called, so the container exists even though no model provider
//! answers. When the gateway creates none, these cases are not run: a
//! container the harness made would prove nothing about OpenClaw's.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

use super::{Ctx, as_user, expect};
use crate::suite::report::Outcome;
use hostutil::shell_quote;

/// The system unit that checks the sandbox image baked into Docker's store.
const IMAGE_UNIT: &str = "openclaw-sandbox-image.service";
/// The user unit of the sandboxes' rootless Docker daemon (user `sandboxd`).
pub const SANDBOX_DAEMON_UNIT: &str = "openclaw-sandbox-dockerd.service";

/// The standard tool groups sandboxed sessions keep (AGT-1), as OpenClaw
/// 2026.9.6 names them (`group:<section>` of its tool catalog): the seed's
/// list without `group:automation` and `group:nodes`, whose tools are
/// host-side (ESC-4) but `heartbeat_respond`.
const STANDARD_GROUPS: &[&str] = &[
    "group:runtime",
    "group:fs",
    "group:sessions",
    "group:memory",
    "group:web",
    "group:ui",
    "group:messaging",
];

/// Groups made only of host-side tools: never in the sandbox allow list.
const HOST_SIDE_GROUPS: &[&str] = &["group:automation", "group:nodes"];

/// What is wrong with `tools.sandbox.tools.allow` (AGT-1): a standard group
/// missing, or a host-side group or tool (ESC-4) allowed.
fn allow_list_problems(allow: &[&str]) -> Vec<String> {
    let mut problems: Vec<String> = STANDARD_GROUPS
        .iter()
        .filter(|g| !allow.contains(g))
        .map(|g| format!("missing {g}"))
        .collect();
    for entry in allow {
        let name = super::esc::policy_name(entry);
        let host_side = HOST_SIDE_GROUPS.contains(entry)
            || super::esc::HOST_SIDE_TOOLS
                .iter()
                .any(|t| super::esc::policy_name(t) == name);
        if host_side || name == "*" {
            problems.push(format!("allows host-side {entry}"));
        }
    }
    problems
}

/// Where [`sandbox_explain`] keeps its answer in the guest (tmpfs: one
/// boot).
const EXPLAIN_CACHE: &str = "/run/vmtest-sandbox-explain";

/// `openclaw sandbox explain --json` as the gateway user: OpenClaw's own
/// resolution of the sandbox settings for the main session. Run once per
/// boot and kept in the guest (AGT-1 and ESC-4 both read it; it takes
/// minutes under emulation and the config does not change in between).
pub(super) fn sandbox_explain(ctx: &mut Ctx<'_>) -> Result<crate::CommandOutput> {
    let run = as_user(ctx, "openclaw sandbox explain --json");
    ctx.machine.run(&format!(
        "c={EXPLAIN_CACHE}; if [ ! -e $c.rc ]; then rc=0; {{ {run}; }} > $c.out 2> $c.err || rc=$?; \
         echo $rc > $c.rc; fi; cat $c.out; cat $c.err >&2; exit \"$(cat $c.rc)\""
    ))
}

/// The label OpenClaw puts on every sandbox container it creates.
const SANDBOX_LABEL: &str = "openclaw.sandbox=1";

/// Ports of the gateway and its side services (NET-3) probed from the sandbox.
const GATEWAY_SIDE_PORTS: &[u16] = &[18791, 18793];

/// Seconds a TCP probe waits before it counts as timed out.
const PROBE_TIMEOUT_SECS: u32 = 5;

/// A bash function printing `PROBE <host> <port> <verdict> <message>` for
/// a TCP connect to each `host port` pair on its command line, in
/// parallel. Verdicts: `open`, `refused`, `timeout`, `unreachable` (any
/// other connect error). Works in the guest and in the sandbox image (bash,
/// coreutils `timeout`; no curl needed).
pub(super) fn probe_script(targets: &[(String, u16)]) -> String {
    let mut s = format!(
        r#"probe() {{
  local out rc
  out=$(timeout {t} bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>&1) && rc=0 || rc=$?
  out=$(printf '%s' "$out" | tr '\n' ' ' | sed 's/^.*: //')
  if [ "$rc" = 0 ]; then echo "PROBE $1 $2 open -"
  elif [ "$rc" = 124 ]; then echo "PROBE $1 $2 timeout no answer in {t} s"
  elif printf '%s' "$out" | grep -qi refused; then echo "PROBE $1 $2 refused $out"
  else echo "PROBE $1 $2 unreachable ${{out:-exit $rc}}"; fi
}}
"#,
        t = PROBE_TIMEOUT_SECS
    );
    for (host, port) in targets {
        let _ = writeln!(s, "probe {} {} &", shell_quote(host), port);
    }
    s.push_str("wait\n");
    s
}

/// One TCP probe's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Probe {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) verdict: String,
    message: String,
}

impl Probe {
    /// The TCP connection was made.
    fn open(&self) -> bool {
        self.verdict == "open"
    }

    /// The target (or the network on its behalf) answered: connected, or
    /// refused with a reset. Either shows the path to it is open.
    pub(super) fn answered(&self) -> bool {
        self.open() || self.verdict == "refused"
    }
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(f, "{host}:{} {}", self.port, self.verdict)?;
        if !self.open() && !self.message.is_empty() && self.message != "-" {
            write!(f, " ({})", self.message.trim())?;
        }
        Ok(())
    }
}

/// Parses the `PROBE` lines of [`probe_script`]'s output.
pub(super) fn parse_probes(text: &str) -> Vec<Probe> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("PROBE ")?;
            let mut parts = rest.splitn(4, ' ');
            let host = parts.next()?.to_string();
            let port = parts.next()?.parse().ok()?;
            let verdict = parts.next()?.to_string();
            let message = parts.next().unwrap_or("").to_string();
            Some(Probe {
                host,
                port,
                verdict,
                message,
            })
        })
        .collect()
}

/// The gateway user's home in the guest.
fn home(ctx: &Ctx<'_>) -> String {
    format!("/home/{}", ctx.facts.user)
}

/// The gateway's `openclaw.json`, parsed (first boot writes plain JSON).
fn read_config(ctx: &mut Ctx<'_>) -> Result<Value> {
    let path = format!("{}/.openclaw/openclaw.json", home(ctx));
    let text = ctx
        .machine
        .succeed(&format!("cat {}", shell_quote(&path)))?;
    serde_json::from_str(&text).with_context(|| format!("{path} in the guest is not JSON"))
}

/// `a.b.c` for a JSON pointer `/a/b/c`.
fn dotted(pointer: &str) -> String {
    pointer.trim_start_matches('/').replace('/', ".")
}

/// Compares `config[pointer]` with `want`; a line for the detail.
fn config_line(config: &Value, pointer: &str, want: &Value) -> (bool, String) {
    let key = dotted(pointer);
    match config.pointer(pointer) {
        Some(got) if got == want => (true, format!("{key} = {got}")),
        Some(got) => (false, format!("{key} = {got}, expected {want}")),
        None => (false, format!("{key} is not set, expected {want}")),
    }
}

/// `Some(Fail)` when the sandbox image unit (which waits for the rootless
/// sandbox daemon, then checks the image) did not come up: the daemon or
/// the image is not as built.
pub(super) fn docker_gate(ctx: &mut Ctx<'_>) -> Result<Option<Outcome>> {
    match ctx
        .machine
        .wait_for_unit(IMAGE_UNIT, None, Duration::from_secs(900))
    {
        Ok(()) => Ok(None),
        Err(e) => {
            let (_, journal) = ctx.machine.execute(&format!(
                "journalctl -b -u {IMAGE_UNIT} --no-pager -o cat | tail -n 5 || true; \
                 echo '--- the sandbox daemon:'; \
                 journalctl -b _SYSTEMD_USER_UNIT={SANDBOX_DAEMON_UNIT} --no-pager -o cat | tail -n 15 || true"
            ))?;
            Ok(Some(Outcome::Fail(format!(
                "{IMAGE_UNIT} did not become active, so the sandbox daemon is not up or the \
                 sandbox image is not in it as built: {e:#}\n{IMAGE_UNIT}'s journal: {}",
                journal.trim()
            ))))
        }
    }
}

/// `docker inspect` of one object, parsed (the first array element).
fn docker_inspect(ctx: &mut Ctx<'_>, kind: &str, name: &str) -> Result<Value> {
    let text = ctx
        .machine
        .succeed(&format!("docker {kind} inspect {}", shell_quote(name)))?;
    let parsed: Value = serde_json::from_str(&text)
        .with_context(|| format!("docker {kind} inspect {name}: not JSON"))?;
    parsed
        .get(0)
        .cloned()
        .ok_or_else(|| anyhow!("docker {kind} inspect {name}: empty answer"))
}

/// AGT-1: the sandbox settings of `openclaw.json`, then OpenClaw's own
/// view of them (`openclaw sandbox explain --json`).
pub fn agt_1(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    let config = read_config(ctx)?;
    let expected: Vec<(&str, Value)> = vec![
        ("/agents/defaults/sandbox/mode", json!("all")),
        ("/agents/defaults/sandbox/workspaceAccess", json!("rw")),
        (
            "/agents/defaults/sandbox/docker/image",
            json!(ctx.facts.sandbox_image),
        ),
        ("/agents/defaults/sandbox/docker/network", json!("bridge")),
        ("/agents/defaults/sandbox/docker/readOnlyRoot", json!(false)),
        ("/agents/defaults/thinkingDefault", json!("high")),
        ("/agents/defaults/elevatedDefault", json!("off")),
        ("/tools/elevated/enabled", json!(false)),
        ("/tools/exec/host", json!("sandbox")),
    ];
    let mut lines = Vec::new();
    let mut wrong = Vec::new();
    for (pointer, want) in &expected {
        let (ok, line) = config_line(&config, pointer, want);
        if !ok {
            wrong.push(dotted(pointer));
        }
        lines.push(line);
    }
    if ctx.facts.sandbox_image != "openclaw-sandbox-custom:latest" {
        wrong.push("agents.defaults.sandbox.docker.image".into());
        lines.push(format!(
            "the manifest names the sandbox image {}, expected openclaw-sandbox-custom:latest",
            ctx.facts.sandbox_image
        ));
    }
    let allow: Vec<&str> = config
        .pointer("/tools/sandbox/tools/allow")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let problems = allow_list_problems(&allow);
    if problems.is_empty() {
        lines.push(format!("tools.sandbox.tools.allow = {allow:?}"));
    } else {
        wrong.push("tools.sandbox.tools.allow".into());
        lines.push(format!(
            "tools.sandbox.tools.allow = {allow:?}: {}",
            problems.join(", ")
        ));
    }

    // OpenClaw's own resolution of the same settings for the main session.
    let out = sandbox_explain(ctx)?;
    let status = out.status;
    let text = out.stdout_text();
    let stderr = out.stderr_text();
    let explained: Option<Value> = if status == 0 {
        serde_json::from_str(&text).ok()
    } else {
        None
    };
    match explained {
        Some(e) => {
            let checks: [(&str, Value); 5] = [
                ("/sandbox/mode", json!("all")),
                ("/sandbox/workspaceAccess", json!("rw")),
                ("/sandbox/sessionIsSandboxed", json!(true)),
                ("/sandbox/backend", json!("docker")),
                ("/elevated/enabled", json!(false)),
            ];
            for (pointer, want) in checks {
                let (ok, line) = config_line(&e, pointer, &want);
                if !ok {
                    wrong.push(format!("sandbox explain: {}", dotted(pointer)));
                }
                lines.push(format!("sandbox explain: {line}"));
            }
            let tools: Vec<&str> = e
                .pointer("/sandbox/tools/allow")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let core = [
                "exec",
                "process",
                "read",
                "write",
                "edit",
                "ls",
                "web_fetch",
                "memory_search",
            ];
            let absent: Vec<&str> = core.into_iter().filter(|t| !tools.contains(t)).collect();
            if absent.is_empty() {
                lines.push(format!(
                    "sandbox explain: {} tools allowed in the sandbox, including {core:?}",
                    tools.len()
                ));
            } else {
                wrong.push("sandbox explain: sandbox.tools.allow".into());
                lines.push(format!(
                    "sandbox explain: the effective sandbox tool list lacks {absent:?}"
                ));
            }
        }
        None => {
            // OpenClaw's own view is part of the case: without it the case
            // is not run (when the config holds), never passed.
            let why = super::esc::command_failure(status, &stderr, &text);
            if wrong.is_empty() {
                lines.push(format!("live part not obtained: {why}"));
                return Ok(Outcome::NotRun(lines.join("\n")));
            }
            wrong.push("openclaw sandbox explain".into());
            lines.push(why);
        }
    }

    let detail = if wrong.is_empty() {
        lines.join("\n")
    } else {
        format!("wrong: {}\n{}", wrong.join(", "), lines.join("\n"))
    };
    Ok(expect(wrong.is_empty(), detail))
}

/// AGT-2: the image is in Docker under the ID recorded at build time, read
/// from the image store the build wrote (its config file there hashes to
/// that ID and `repositories.json` tags it), with no `docker load` and no
/// pull since the daemon started, and no archive left to load.
pub fn agt_2(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    if let Some(outcome) = docker_gate(ctx)? {
        return Ok(outcome);
    }
    let image = ctx.facts.sandbox_image.clone();
    let Some(expected) = ctx
        .facts
        .manifest
        .pointer("/sandbox_image/id")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return Ok(Outcome::Fail(
            "the image manifest records no sandbox_image.id".into(),
        ));
    };
    let root = match ctx.facts.manifest_str("/sandbox_image/docker_store/root") {
        r if r.is_empty() => "/var/lib/docker".to_string(),
        r => r,
    };
    let inspected = docker_inspect(ctx, "image", &image)?;
    let id = inspected.get("Id").and_then(Value::as_str).unwrap_or("");
    let repo_digests = inspected
        .get("RepoDigests")
        .and_then(Value::as_array)
        .map(Vec::len)
        .unwrap_or(0);
    // The store the build wrote: the config file named by the ID hashes to
    // it, and the reference store tags the image with it.
    let hex = expected.trim_start_matches("sha256:");
    let store = format!("{root}/image/overlay2");
    let (_, stored) = ctx.machine.execute(&format!(
        "sha256sum {} | cut -d' ' -f1",
        shell_quote(&format!("{store}/imagedb/content/sha256/{hex}"))
    ))?;
    let stored = stored.trim().to_string();
    let (_, repositories) = ctx.machine.execute(&format!(
        "cat {}",
        shell_quote(&format!("{store}/repositories.json"))
    ))?;
    let tagged = serde_json::from_str::<Value>(&repositories)
        .ok()
        .and_then(|v| {
            v.get("Repositories")?
                .as_object()?
                .values()
                .find_map(|repo| repo.get(&image)?.as_str().map(str::to_string))
        })
        .unwrap_or_default();
    // How it got there: not by `docker load` (no `Loaded image` in the
    // checking unit's journal, no load event, no archive on disk) and not
    // from a registry (no pull event; a pulled image carries RepoDigests).
    let journal = ctx.machine.succeed(&format!(
        "journalctl -b -u {IMAGE_UNIT} --no-pager -o cat || true"
    ))?;
    let loaded = journal.matches("Loaded image").count();
    let checked = journal.contains(&format!("present with id {expected}"));
    let events = ctx.machine.succeed(
        "docker events --since 0 --until \"$(date +%s)\" --filter type=image \
         --format '{{.Action}} {{.Actor.ID}}'",
    )?;
    let pulls: Vec<&str> = events.lines().filter(|l| l.starts_with("pull")).collect();
    let loads = events.lines().filter(|l| l.starts_with("load")).count();
    let (_, archives) = ctx.machine.execute(
        "find /usr/share/openclaw-appliance -name '*.tar' -o -name '*.tar.*' 2>/dev/null || true",
    )?;
    let archives: Vec<&str> = archives.lines().filter(|l| !l.is_empty()).collect();
    let mut problems = Vec::new();
    if id != expected {
        problems.push(format!("image ID {id}, the build recorded {expected}"));
    }
    if stored != hex {
        problems.push(format!(
            "{store}/imagedb/content/sha256/{hex} hashes to `{stored}`, not to the recorded ID"
        ));
    }
    if tagged != expected {
        problems.push(format!(
            "{store}/repositories.json tags {image} as `{tagged}`, not {expected}"
        ));
    }
    if repo_digests != 0 {
        problems.push(format!(
            "{repo_digests} registry digest(s) (RepoDigests): the image came from a registry"
        ));
    }
    if !pulls.is_empty() {
        problems.push(format!("docker events show pulls: {pulls:?}"));
    }
    if loads != 0 || loaded != 0 {
        problems.push(format!(
            "the image was loaded: {loads} load event(s), `Loaded image` x{loaded} in {IMAGE_UNIT}'s journal"
        ));
    }
    if !archives.is_empty() {
        problems.push(format!("image archives on disk: {archives:?}"));
    }
    if !checked {
        problems.push(format!(
            "the journal of {IMAGE_UNIT} does not say `present with id {expected}` this boot"
        ));
    }
    let seen = format!(
        "{image}: Id {id} (manifest {expected}); store config sha256 {stored}; \
         repositories.json {tagged}; RepoDigests: {repo_digests}; \
         image events since the daemon started: {loads} load, {} pull; \
         {IMAGE_UNIT} checked it: {checked}; archives: {}",
        pulls.len(),
        archives.len()
    );
    Ok(if problems.is_empty() {
        Outcome::Pass(seen)
    } else {
        Outcome::Fail(format!("{}\n{seen}", problems.join("; ")))
    })
}

/// AGT-3: the image's user is 1000 (`node`, `/home/node`) and it holds no
/// setuid or setgid file.
pub fn agt_3(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    if let Some(outcome) = docker_gate(ctx)? {
        return Ok(outcome);
    }
    let image = ctx.facts.sandbox_image.clone();
    let inspected = docker_inspect(ctx, "image", &image)?;
    let user = inspected
        .pointer("/Config/User")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let passwd = ctx.machine.succeed(&format!(
        "docker run --rm --network none --entrypoint cat {} /etc/passwd",
        shell_quote(&image)
    ))?;
    let node = passwd
        .lines()
        .find(|l| l.split(':').next() == Some("node"))
        .map(str::to_string);
    let uid_1000: Vec<&str> = passwd
        .lines()
        .filter(|l| l.split(':').nth(2) == Some("1000"))
        .collect();
    // A file-mode audit: root inside a throwaway container, so that no
    // directory is unreadable; no network.
    let scan = ctx.machine.run_timeout(
        &format!(
            "docker run --rm --network none --user 0 --entrypoint find {} / -xdev -perm /6000 -print",
            shell_quote(&image)
        ),
        Duration::from_secs(600),
    )?;
    if scan.status != 0 {
        bail!(
            "the setuid/setgid scan of {image} failed (exit {}): {}",
            scan.status,
            String::from_utf8_lossy(&scan.stderr).trim()
        );
    }
    let special: Vec<String> = scan
        .stdout_text()
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect();

    let mut problems = Vec::new();
    if user != "1000" {
        problems.push(format!("Config.User is {user:?}, expected \"1000\""));
    }
    match &node {
        Some(line) => {
            let f: Vec<&str> = line.split(':').collect();
            if f.get(2) != Some(&"1000") || f.get(5) != Some(&"/home/node") {
                problems.push(format!(
                    "/etc/passwd has `{line}`, expected node with uid 1000 and home /home/node"
                ));
            }
        }
        None => problems.push("/etc/passwd has no `node` user".into()),
    }
    if uid_1000.len() != 1 {
        problems.push(format!(
            "uid 1000 has {} passwd entries: {uid_1000:?}",
            uid_1000.len()
        ));
    }
    if !special.is_empty() {
        problems.push(format!(
            "{} setuid/setgid file(s): {}",
            special.len(),
            special
                .iter()
                .take(20)
                .cloned()
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    let seen = format!(
        "Config.User {user:?}; passwd: {}; setuid/setgid files (find / -xdev -perm /6000): {}",
        node.as_deref().unwrap_or("no node entry"),
        special.len()
    );
    Ok(if problems.is_empty() {
        Outcome::Pass(seen)
    } else {
        Outcome::Fail(format!("{}\n{seen}", problems.join("; ")))
    })
}

/// The sandbox container the probes run in.
#[derive(Debug, Clone)]
pub(super) struct Sandbox {
    /// Container name.
    pub(super) name: String,
    /// How it came to be, for the outcome's detail.
    pub(super) origin: String,
}

/// Running OpenClaw sandbox containers (not the browser sandbox), names.
fn running_sandboxes(ctx: &mut Ctx<'_>) -> Result<Vec<String>> {
    let out = ctx.machine.succeed(&format!(
        "docker ps --filter label={SANDBOX_LABEL} --format '{{{{.Names}}}} {{{{.Label \"openclaw.sandboxBrowser\"}}}}'"
    ))?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let name = parts.next()?;
            match parts.next() {
                Some(browser) if !browser.is_empty() => None,
                _ => Some(name.to_string()),
            }
        })
        .collect())
}

/// The sandbox container of the gateway's main agent: one already running,
/// or one the gateway creates for an agent turn. `Err(why)` when the
/// gateway made none: a container the harness made would prove nothing
/// about the one OpenClaw creates, so the case is not run.
pub(super) fn sandbox(ctx: &mut Ctx<'_>) -> Result<std::result::Result<Sandbox, String>> {
    if let Some(name) = running_sandboxes(ctx)?.into_iter().next() {
        return Ok(Ok(Sandbox {
            origin: format!("container {name}, created by the gateway (found running)"),
            name,
        }));
    }
    let health = gateway_health(ctx)?;
    if health != "200" {
        return Ok(Err(format!(
            "the gateway does not answer on 127.0.0.1 (/health: {health:?}), so it created \
             no sandbox container to examine"
        )));
    }

    // An agent turn through the gateway: OpenClaw provisions the session's
    // sandbox (ensureSandboxContainer → buildSandboxCreateArgs) after it
    // has resolved the model's credentials but before it calls the model,
    // so the container appears even though no model answers. First with
    // the configured default model, then with one of the provider whose
    // credentials first boot installs (Anthropic). The CLI reads the
    // gateway token from openclaw.json itself: no secret on a command line.
    let mut why = Vec::new();
    for model in [None, Some(anthropic_model(ctx)?)] {
        let flag = model
            .as_deref()
            .map(|m| format!(" --model {}", shell_quote(m)))
            .unwrap_or_default();
        let turn = as_user(
            ctx,
            &format!(
                "timeout 240 openclaw agent --agent main --session-id vmtest-sandbox-probe{flag} \
                 --message 'vm-test: sandbox probe, no reply needed' --json --timeout 180 2>&1 | tail -c 3000"
            ),
        );
        // The turn runs in the background: the container appears before
        // the model is called, and the turn then waits minutes (under
        // emulation) for a model it cannot reach. The guest's `timeout 240`
        // bounds it in guest time; under icount guest time runs slower than
        // the host's, so allow more here.
        if let Some(name) = background_turn(ctx, &turn, Duration::from_secs(1500))? {
            return Ok(Ok(Sandbox {
                origin: format!(
                    "container {name}, created by the gateway for an agent turn \
                     (`openclaw agent`, model {}; the turn was stopped once the container ran)",
                    model.as_deref().unwrap_or("default")
                ),
                name,
            }));
        }
        let out = ctx.machine.succeed(&format!("cat {TURN_OUT}"))?;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Some(name) = running_sandboxes(ctx)?.into_iter().next() {
                return Ok(Ok(Sandbox {
                    origin: format!(
                        "container {name}, created by the gateway for an agent turn \
                         (`openclaw agent`, model {})",
                        model.as_deref().unwrap_or("default")
                    ),
                    name,
                }));
            }
            std::thread::sleep(Duration::from_secs(2));
        }
        let reason = turn_reason(&out);
        if model.is_none() {
            ctx.notes.push(format!(
                "AGT/LAT sandbox: an agent turn with the default model provisioned no sandbox: {reason}"
            ));
        }
        why.push(format!(
            "model {}: {reason}",
            model.as_deref().unwrap_or("default")
        ));
    }
    Ok(Err(format!(
        "the gateway created no sandbox container for an agent turn ({})",
        why.join("; ")
    )))
}

/// Where a background agent turn's output goes in the guest.
const TURN_OUT: &str = "/run/vmtest-agent-turn.out";

/// Starts the agent turn `turn` (a root shell command) in the background
/// and waits, up to `limit`, for the gateway to start a sandbox container
/// or for the turn to end. A container running: the turn is stopped and
/// the container's name returned. The turn ended first: `None`, its output
/// in [`TURN_OUT`].
fn background_turn(ctx: &mut Ctx<'_>, turn: &str, limit: Duration) -> Result<Option<String>> {
    let pid = ctx.machine.succeed(&format!(
        "rm -f {TURN_OUT}; bash -c {} > {TURN_OUT} 2>&1 < /dev/null & echo $!",
        shell_quote(turn)
    ))?;
    let pid = pid.trim().to_string();
    let start = Instant::now();
    loop {
        if let Some(name) = running_sandboxes(ctx)?.into_iter().next() {
            stop_turn(ctx)?;
            return Ok(Some(name));
        }
        let (alive, _) = ctx.machine.execute(&format!("kill -0 {pid} 2>/dev/null"))?;
        if alive != 0 {
            return Ok(None);
        }
        if start.elapsed() > limit {
            stop_turn(ctx)?;
            return Ok(None);
        }
        std::thread::sleep(Duration::from_secs(5));
    }
}

/// Stops a background agent turn: every process whose command line names
/// its session (`runuser`, the shell, `timeout`, the CLI). The bracket
/// keeps the pattern from matching the shell that runs `pkill` itself.
fn stop_turn(ctx: &mut Ctx<'_>) -> Result<()> {
    ctx.machine
        .execute("pkill -TERM -f 'vmtest-sandbox-prob[e]' || true")?;
    Ok(())
}

/// The model for the second agent turn: the first available Anthropic
/// model of OpenClaw's catalog (first boot installs only Anthropic
/// credentials), else a model 2026.9.6 is known to list.
fn anthropic_model(ctx: &mut Ctx<'_>) -> Result<String> {
    let (_, text) = ctx.machine.execute(&as_user(
        ctx,
        "openclaw models list --provider anthropic --json 2>/dev/null || true",
    ))?;
    let listed = serde_json::from_str::<Value>(&text).ok().and_then(|v| {
        v.get("models")?
            .as_array()?
            .iter()
            .filter(|m| m.get("available").and_then(Value::as_bool) != Some(false))
            .filter_map(|m| m.get("key").and_then(Value::as_str))
            .find(|k| k.starts_with("anthropic/"))
            .map(str::to_string)
    });
    Ok(listed.unwrap_or_else(|| "anthropic/claude-haiku-4-5".into()))
}

/// Why an `openclaw agent --json` turn failed, from its output (one line).
fn turn_reason(output: &str) -> String {
    let json_start = output.find('{');
    let parsed = json_start
        .and_then(|i| serde_json::from_str::<Value>(&output[i..]).ok())
        .or_else(|| {
            // The JSON object is followed by the CLI's own lines.
            let i = json_start?;
            let end = output.rfind("\n}")? + 2;
            serde_json::from_str::<Value>(output.get(i..end)?).ok()
        });
    if let Some(message) = parsed
        .as_ref()
        .and_then(|v| v.pointer("/error/message"))
        .and_then(Value::as_str)
    {
        return message.to_string();
    }
    let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

/// Runs a bash script inside the sandbox as its configured user.
pub(super) fn in_sandbox(ctx: &mut Ctx<'_>, sb: &Sandbox, script: &str) -> Result<(i32, String)> {
    ctx.machine.execute(&format!(
        "docker exec {} bash -c {} 2>&1",
        shell_quote(&sb.name),
        shell_quote(script)
    ))
}

/// Whether a bind source exposes `path`: it is `path` itself, inside it,
/// or one of its ancestors.
fn exposes(source: &str, path: &str) -> bool {
    let s = source.trim_end_matches('/');
    let p = path.trim_end_matches('/');
    s == p || s.starts_with(&format!("{p}/")) || p.starts_with(&format!("{s}/")) || s.is_empty()
}

/// AGT-4's verdict on a `docker inspect` of the sandbox container; `home`
/// is the gateway user's home.
fn judge_container(inspected: &Value, home: &str) -> (Vec<String>, Vec<String>) {
    let mut seen = Vec::new();
    let mut problems = Vec::new();
    let hc = inspected.get("HostConfig").cloned().unwrap_or(Value::Null);
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };

    let cap_drop = strings(hc.get("CapDrop"));
    let cap_add = strings(hc.get("CapAdd"));
    if cap_drop.iter().any(|c| c.eq_ignore_ascii_case("ALL")) {
        seen.push("CapDrop [ALL]".into());
    } else {
        problems.push(format!("CapDrop is {cap_drop:?}, not ALL"));
    }
    if !cap_add.is_empty() {
        problems.push(format!("CapAdd is {cap_add:?}"));
    }
    let sec = strings(hc.get("SecurityOpt"));
    if sec.iter().any(|o| {
        o == "no-new-privileges" || o == "no-new-privileges:true" || o == "no-new-privileges=true"
    }) {
        seen.push(format!("SecurityOpt {sec:?}"));
    } else {
        problems.push(format!("SecurityOpt {sec:?} lacks no-new-privileges"));
    }
    if sec.iter().any(|o| o.contains("unconfined")) {
        problems.push(format!("SecurityOpt {sec:?} turns a confinement off"));
    }
    match hc.get("Privileged").and_then(Value::as_bool) {
        Some(false) => seen.push("Privileged false".into()),
        other => problems.push(format!("Privileged is {other:?}")),
    }
    let net = hc.get("NetworkMode").and_then(Value::as_str).unwrap_or("");
    if net == "bridge" {
        seen.push("NetworkMode bridge".into());
    } else {
        problems.push(format!("NetworkMode is {net:?}, expected bridge"));
    }
    for (key, bad) in [
        ("PidMode", "host"),
        ("IpcMode", "host"),
        ("UTSMode", "host"),
        ("UsernsMode", "host"),
    ] {
        if hc.get(key).and_then(Value::as_str) == Some(bad) {
            problems.push(format!("{key} is host"));
        }
    }
    let tmpfs: Vec<String> = hc
        .get("Tmpfs")
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let missing_tmpfs: Vec<&str> = ["/tmp", "/var/tmp"]
        .into_iter()
        .filter(|t| !tmpfs.iter().any(|k| k == t))
        .collect();
    if missing_tmpfs.is_empty() {
        seen.push(format!("Tmpfs {tmpfs:?}"));
    } else {
        problems.push(format!("Tmpfs {tmpfs:?} lacks {missing_tmpfs:?}"));
    }
    let user = inspected
        .pointer("/Config/User")
        .and_then(Value::as_str)
        .unwrap_or("");
    seen.push(format!("User {user:?}"));
    if user.is_empty() || user.split(':').next() == Some("0") || user.starts_with("root") {
        problems.push(format!("the container runs as {user:?} (root)"));
    }

    let mounts: Vec<(String, String, String, bool)> = inspected
        .get("Mounts")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|m| {
                    let s = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    (
                        s("Type"),
                        s("Source"),
                        s("Destination"),
                        m.get("RW").and_then(Value::as_bool).unwrap_or(true),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let workspace = mounts
        .iter()
        .find(|(t, _, d, _)| t == "bind" && d == "/workspace");
    match workspace {
        Some((_, src, _, rw)) => seen.push(format!(
            "workspace bind {src} -> /workspace ({})",
            if *rw { "rw" } else { "ro" }
        )),
        None => problems.push("no bind mount at /workspace".into()),
    }
    let state = format!("{home}/.openclaw");
    let forbidden = [
        "/var/run/docker.sock".to_string(),
        "/run/docker.sock".to_string(),
        "/run/containerd".to_string(),
        state.clone(),
        format!("{home}/.ssh"),
    ];
    // The only binds allowed under ~/.openclaw: the agent workspace(s) and
    // OpenClaw's read-only sandbox skills copy.
    let allowed_under_state = [format!("{state}/workspace"), format!("{state}/sandbox/")];
    for (kind, src, dst, rw) in &mounts {
        if kind != "bind" {
            continue;
        }
        let inside_state = src.starts_with(&format!("{state}/"));
        let allowed = inside_state
            && allowed_under_state
                .iter()
                .any(|a| src.starts_with(a.as_str()))
            && !src.contains("/.openclaw/credentials")
            && !src.ends_with("openclaw.json");
        let hit = forbidden.iter().find(|f| {
            if f.as_str() == state {
                // ~/.openclaw itself or an ancestor of it is forbidden;
                // inside it only the allowed subtrees.
                exposes(src, f) && !allowed
            } else {
                exposes(src, f)
            }
        });
        if let Some(f) = hit {
            problems.push(format!("bind {src} -> {dst} exposes {f}"));
        } else if dst != "/workspace" {
            seen.push(format!(
                "bind {src} -> {dst} ({})",
                if *rw { "rw" } else { "ro" }
            ));
        }
    }
    seen.push(format!(
        "{} mount(s), none of docker.sock, ~/.openclaw, ~/.ssh",
        mounts.len()
    ));
    (seen, problems)
}

/// AGT-4: the sandbox container's configuration, as Docker reports it.
pub fn agt_4(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    if let Some(outcome) = docker_gate(ctx)? {
        return Ok(outcome);
    }
    let sb = match sandbox(ctx)? {
        Ok(sb) => sb,
        Err(why) => return Ok(Outcome::NotRun(why)),
    };
    let inspected = docker_inspect(ctx, "container", &sb.name)?;
    let label = inspected
        .pointer("/Config/Labels/openclaw.sandbox")
        .and_then(Value::as_str)
        .unwrap_or("");
    let (mut seen, mut problems) = judge_container(&inspected, &home(ctx));
    if label != "1" {
        problems.push("the container lacks OpenClaw's openclaw.sandbox=1 label".into());
    }
    seen.insert(0, sb.origin.clone());
    Ok(if problems.is_empty() {
        Outcome::Pass(seen.join("\n"))
    } else {
        Outcome::Fail(format!("{}\n{}", problems.join("; "), seen.join("\n")))
    })
}

/// The script of AGT-5: identity, capabilities and which directories the
/// sandbox user can write to, one `key value` line each.
const AGT5_SCRIPT: &str = r#"
echo "uid $(id -u)"
echo "gid $(id -g)"
grep -E '^(CapEff|CapPrm|CapAmb|NoNewPrivs):' /proc/self/status | tr -d '\t' | sed 's/:/ /'
for d in /usr/bin /usr/local/bin /etc /usr/lib /home/node /workspace /tmp; do
  f="$d/.vmtest-write-probe-$$"
  if ( : > "$f" ) 2>/dev/null; then rm -f "$f"; echo "write $d ok"; else echo "write $d denied"; fi
done
"#;

/// AGT-5: inside the sandbox, as its user: no capabilities, no_new_privs,
/// system directories read-only, the home, workspace and /tmp writable.
pub fn agt_5(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    if let Some(outcome) = docker_gate(ctx)? {
        return Ok(outcome);
    }
    let sb = match sandbox(ctx)? {
        Ok(sb) => sb,
        Err(why) => return Ok(Outcome::NotRun(why)),
    };
    let (status, out) = in_sandbox(ctx, &sb, AGT5_SCRIPT)?;
    if status != 0 {
        bail!("the probe in {} failed (exit {status}): {out}", sb.name);
    }
    let value = |key: &str| -> Option<String> {
        out.lines().find_map(|l| {
            l.strip_prefix(&format!("{key} "))
                .map(|v| v.trim().to_string())
        })
    };
    let mut problems = Vec::new();
    let mut seen = vec![sb.origin.clone()];
    let uid = value("uid").unwrap_or_default();
    if uid != "1000" {
        problems.push(format!("runs as uid {uid:?}, expected 1000"));
    }
    for (key, want) in [
        ("CapEff", "0000000000000000"),
        ("CapPrm", "0000000000000000"),
        ("NoNewPrivs", "1"),
    ] {
        let got = value(key).unwrap_or_default();
        if got != want {
            problems.push(format!("{key} is {got:?}, expected {want}"));
        }
    }
    seen.push(format!(
        "uid {uid} gid {}; CapEff {}; CapPrm {}; NoNewPrivs {}",
        value("gid").unwrap_or_default(),
        value("CapEff").unwrap_or_default(),
        value("CapPrm").unwrap_or_default(),
        value("NoNewPrivs").unwrap_or_default()
    ));
    for (dir, want) in [
        ("/usr/bin", "denied"),
        ("/usr/local/bin", "denied"),
        ("/etc", "denied"),
        ("/usr/lib", "denied"),
        ("/home/node", "ok"),
        ("/workspace", "ok"),
        ("/tmp", "ok"),
    ] {
        let got = value(&format!("write {dir}")).unwrap_or_else(|| "not probed".into());
        if got != want {
            problems.push(format!(
                "writing to {dir}: {got}, expected {}",
                if want == "ok" {
                    "to succeed"
                } else {
                    "to fail"
                }
            ));
        }
        seen.push(format!("write {dir}: {got}"));
    }
    Ok(if problems.is_empty() {
        Outcome::Pass(seen.join("\n"))
    } else {
        Outcome::Fail(format!("{}\n{}", problems.join("; "), seen.join("\n")))
    })
}

/// The gateway's health from the host side, as the gateway user: the HTTP
/// status of `/health` on loopback.
pub(super) fn gateway_health(ctx: &mut Ctx<'_>) -> Result<String> {
    let port = ctx.facts.port;
    let (_, code) = ctx.machine.execute(&as_user(
        ctx,
        &format!(
            "curl -sS -m 5 -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{port}/health || true"
        ),
    ))?;
    Ok(code.trim().to_string())
}

/// AGT-6: from inside the sandbox, the gateway is unreachable on the
/// container's own loopback and on the bridge gateway address, while the
/// host side reaches it at the same time.
pub fn agt_6(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    if let Some(outcome) = docker_gate(ctx)? {
        return Ok(outcome);
    }
    let sb = match sandbox(ctx)? {
        Ok(sb) => sb,
        Err(why) => return Ok(Outcome::NotRun(why)),
    };
    let port = ctx.facts.port;
    let bridge_gw = ctx
        .machine
        .succeed(&format!(
            "docker inspect -f '{{{{range .NetworkSettings.Networks}}}}{{{{.Gateway}}}} {{{{end}}}}' {}",
            shell_quote(&sb.name)
        ))?
        .split_whitespace()
        .next()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("{} has no network gateway address", sb.name))?;
    let host_ip = ctx
        .machine
        .succeed("ip -4 -o route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \\([0-9.]*\\).*/\\1/p' || true")?
        .trim()
        .to_string();

    let before = gateway_health(ctx)?;
    // The same probe on the host side: proves the probe itself connects.
    let host_side = parse_probes(
        &ctx.machine
            .succeed(&as_user(ctx, &probe_script(&[("127.0.0.1".into(), port)])))?,
    );
    let mut targets: Vec<(String, u16)> = vec![("127.0.0.1".into(), port), ("::1".into(), port)];
    for p in std::iter::once(port).chain(GATEWAY_SIDE_PORTS.iter().copied()) {
        targets.push((bridge_gw.clone(), p));
        if !host_ip.is_empty() {
            targets.push((host_ip.clone(), p));
        }
    }
    let (status, out) = in_sandbox(ctx, &sb, &probe_script(&targets))?;
    let probes = parse_probes(&out);
    let after = gateway_health(ctx)?;

    let mut problems = Vec::new();
    if probes.len() != targets.len() {
        bail!(
            "the probe in {} answered {} of {} targets (exit {status}): {out}",
            sb.name,
            probes.len(),
            targets.len()
        );
    }
    let open: Vec<String> = probes
        .iter()
        .filter(|p| p.open())
        .map(|p| p.to_string())
        .collect();
    if !open.is_empty() {
        problems.push(format!("reachable from the sandbox: {}", open.join(", ")));
    }
    if before != "200" || after != "200" {
        problems.push(format!(
            "the gateway did not answer on the host side during the probe (/health {before} before, {after} after): the probe proves nothing"
        ));
    }
    if !host_side.iter().all(Probe::open) {
        problems.push(format!(
            "the same TCP probe from the host side does not connect: {}",
            host_side
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let seen = format!(
        "{}\nhost side: /health {before} before, {after} after; probe {}\nfrom the sandbox (bridge gateway {bridge_gw}{}):\n{}",
        sb.origin,
        host_side
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        if host_ip.is_empty() {
            String::new()
        } else {
            format!(", host address {host_ip}")
        },
        probes
            .iter()
            .map(|p| format!("  {p}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    Ok(if problems.is_empty() {
        Outcome::Pass(seen)
    } else {
        Outcome::Fail(format!("{}\n{seen}", problems.join("; ")))
    })
}

/// NODE-1: node exec is inert: no `tools.exec.node` anywhere in the
/// config, no MCP server entry for node exec, no `node-exec-mcp` binary.
pub fn node_1(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    let config = read_config(ctx)?;
    let mut problems = Vec::new();
    let mut seen = Vec::new();

    let mut exec_node = Vec::new();
    find_exec_node(&config, "", &mut exec_node);
    if exec_node.is_empty() {
        seen.push("no tools.exec.node (global or per agent)".to_string());
    } else {
        problems.push(format!("node exec configured at {}", exec_node.join(", ")));
    }
    let host = config
        .pointer("/tools/exec/host")
        .and_then(Value::as_str)
        .unwrap_or("(unset)");
    if host == "node" {
        problems.push("tools.exec.host = node".into());
    }
    seen.push(format!("tools.exec.host = {host}"));

    let servers = config.pointer("/mcp/servers").and_then(Value::as_object);
    let node_servers: Vec<String> = servers
        .map(|m| {
            m.iter()
                .filter(|(name, v)| {
                    let text = format!("{name} {v}").to_ascii_lowercase();
                    text.contains("node-exec")
                        || text.contains("node_exec")
                        || text.contains("nodeexec")
                })
                .map(|(name, _)| name.clone())
                .collect()
        })
        .unwrap_or_default();
    let whole = config.to_string().to_ascii_lowercase();
    if !node_servers.is_empty() {
        problems.push(format!(
            "MCP server entries for node exec: {node_servers:?}"
        ));
    } else if whole.contains("node-exec-mcp") {
        problems.push("openclaw.json mentions node-exec-mcp".into());
    }
    seen.push(format!(
        "mcp.servers: {} entr(y/ies), none for node exec",
        servers.map(|m| m.len()).unwrap_or(0)
    ));

    let on_path = ctx.machine.succeed(&format!(
        "{{ command -v node-exec-mcp || true; {} || true; }}",
        as_user(ctx, "command -v node-exec-mcp")
    ))?;
    if !on_path.trim().is_empty() {
        problems.push(format!("node-exec-mcp on PATH: {}", on_path.trim()));
    }
    let found = ctx.machine.run_timeout(
        "find /opt /usr/local /usr/bin /usr/sbin /usr/lib/node_modules /home /root -xdev \
         -iname '*node-exec-mcp*' -print 2>/dev/null || true",
        Duration::from_secs(600),
    )?;
    let files: Vec<String> = found
        .stdout_text()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if !files.is_empty() {
        problems.push(format!("node-exec-mcp files: {}", files.join(" ")));
    }
    seen.push(format!(
        "node-exec-mcp: not on root's or {}'s PATH; {} file(s) under /opt /usr/local /usr/bin /usr/sbin /usr/lib/node_modules /home /root",
        ctx.facts.user,
        files.len()
    ));
    Ok(if problems.is_empty() {
        Outcome::Pass(seen.join("\n"))
    } else {
        Outcome::Fail(format!("{}\n{}", problems.join("; "), seen.join("\n")))
    })
}

/// Collects the dotted paths of every `tools.exec.node` in `v`.
fn find_exec_node(v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                if k == "node" && path.ends_with("tools.exec") {
                    out.push(p.clone());
                }
                find_exec_node(child, &p, out);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                find_exec_node(child, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// The peers LAT-1 plants in a network namespace of the guest: tailnet
/// addresses (Tailscale's CGNAT range and ULA prefix) and one host in each
/// RFC 1918 range, none in Docker's own bridge subnet.
pub(super) const LAT_PEERS: &[&str] = &[
    "100.100.100.100",
    "100.64.0.1",
    "100.127.255.254",
    "10.200.0.10",
    "172.31.200.10",
    "192.168.200.10",
    "fd7a:115c:a1e0::1",
];

/// The port the planted peers listen on.
pub(super) const LAT_PORT: u16 = 80;

/// Whether `peer` is a tailnet address (Tailscale's CGNAT range
/// 100.64.0.0/10 or its ULA prefix fd7a:115c:a1e0::/48).
fn in_tailnet_range(peer: &str) -> bool {
    match peer.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => {
            let [a, b, ..] = ip.octets();
            a == 100 && (64..128).contains(&b)
        }
        Ok(std::net::IpAddr::V6(ip)) => ip.segments()[..3] == [0xfd7a, 0x115c, 0xa1e0],
        Err(_) => false,
    }
}

/// The peers to plant: all of [`LAT_PEERS`], or with a real tailnet only
/// the private-range ones (tailscaled routes its whole range into
/// tailscale0 ahead of the main table, so a planted tailnet address would
/// not answer even the guest; a real tailnet node stands in for them).
pub(super) fn lat_peers(real_tailnet: bool) -> Vec<&'static str> {
    LAT_PEERS
        .iter()
        .copied()
        .filter(|p| !(real_tailnet && in_tailnet_range(p)))
        .collect()
}

/// Builds the namespace `vmtest-lat` behind veth `vmt-lat0`, routes each of
/// [`LAT_PEERS`] to it (host routes only: the guest's real routes stay),
/// and starts a TCP listener there (`systemd-socket-activate`, part of
/// systemd). Traffic from the sandbox reaches it the way it would reach a
/// tailnet or LAN peer: forwarded by the guest, out of a non-Docker
/// interface.
pub(super) fn lat_setup_script(peers: &[&str]) -> String {
    let mut s = String::from(
        "ip netns add vmtest-lat\n\
         ip link add vmt-lat0 type veth peer name vmt-lat1\n\
         ip link set vmt-lat1 netns vmtest-lat\n\
         ip addr add 198.18.0.1/32 dev vmt-lat0\n\
         ip -6 addr add fd7a:115c:a1e0::fe/64 dev vmt-lat0 nodad\n\
         ip link set vmt-lat0 up\n\
         ip -n vmtest-lat link set lo up\n\
         ip -n vmtest-lat link set vmt-lat1 up\n\
         ip -n vmtest-lat route add 198.18.0.1/32 dev vmt-lat1\n\
         ip -n vmtest-lat route add default via 198.18.0.1 dev vmt-lat1\n",
    );
    for peer in peers {
        if peer.contains(':') {
            let _ = writeln!(
                s,
                "ip -n vmtest-lat -6 addr add {peer}/64 dev vmt-lat1 nodad"
            );
        } else {
            let _ = writeln!(s, "ip -n vmtest-lat addr add {peer}/32 dev vmt-lat1");
            let _ = writeln!(s, "ip route add {peer}/32 dev vmt-lat0");
        }
    }
    let _ = writeln!(
        s,
        "systemd-run --quiet --unit vmtest-lat-listen -p NetworkNamespacePath=/run/netns/vmtest-lat \
         /usr/bin/systemd-socket-activate -l {LAT_PORT} -a /bin/true\n\
         for i in $(seq 50); do ip netns exec vmtest-lat ss -Htln | grep -q ':{LAT_PORT} ' && exit 0; sleep 0.2; done\n\
         echo 'the listener in vmtest-lat did not start' >&2; exit 1"
    );
    s
}

/// Removes everything [`lat_setup_script`] made; safe to run twice.
pub(super) const LAT_TEARDOWN: &str = "systemctl stop vmtest-lat-listen.service 2>/dev/null || true; \
    systemctl reset-failed vmtest-lat-listen.service 2>/dev/null || true; \
    ip link del vmt-lat0 2>/dev/null || true; ip netns del vmtest-lat 2>/dev/null || true";

/// LAT-1: the sandbox reaches neither the tailnet ranges nor private
/// ranges of the host's networks. Each target is first shown reachable
/// from the guest itself (so a pass means the sandbox is filtered, not
/// that the target is absent).
pub fn lat_1(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    if let Some(outcome) = docker_gate(ctx)? {
        return Ok(outcome);
    }
    let sb = match sandbox(ctx)? {
        Ok(sb) => sb,
        Err(why) => return Ok(Outcome::NotRun(why)),
    };
    // With the test tailnet: a real tailnet node (the admin's laptop)
    // listens while LAT-1 probes, in place of planted tailnet addresses.
    let listener = match ctx.tailnet {
        Some(tailnet) => Some(
            tailnet
                .admin_listener(LAT_PORT, Duration::from_secs(600))
                .context("LAT-1: a listening node on the test tailnet")?,
        ),
        None => None,
    };
    let peers = lat_peers(listener.is_some());
    ctx.machine.succeed(LAT_TEARDOWN)?;
    let setup = ctx.machine.succeed(&lat_setup_script(&peers));
    let tailnet_peer = listener
        .as_ref()
        .and_then(|l| l.ips.iter().find(|ip| !ip.contains(':')).cloned());
    let result = setup.and_then(|_| lat_probe(ctx, &sb, &peers, tailnet_peer));
    let teardown = ctx.machine.succeed(LAT_TEARDOWN);
    drop(listener);
    let outcome = result?;
    teardown.context("removing LAT-1's test namespace")?;
    Ok(outcome)
}

/// LAT-1's probes, with the test namespace in place: the planted `peers`
/// and, with the test tailnet, the listening tailnet node `tailnet_peer`.
fn lat_probe(
    ctx: &mut Ctx<'_>,
    sb: &Sandbox,
    peers: &[&str],
    tailnet_peer: Option<String>,
) -> Result<Outcome> {
    let mut targets: Vec<(String, u16)> = peers.iter().map(|p| (p.to_string(), LAT_PORT)).collect();
    if let Some(ip) = &tailnet_peer {
        targets.push((ip.clone(), LAT_PORT));
    }
    // The guest's own default gateway (on Hetzner 172.31.1.1, under QEMU's
    // user network 10.0.2.2): a private host of its real network, when
    // some common port of it answers the guest (a reset counts).
    let gateway = ctx
        .machine
        .succeed("ip -4 route show default | awk '{print $3; exit}'")?
        .trim()
        .to_string();
    if !gateway.is_empty() {
        let ports = [22u16, 53, 80, 443];
        let found = parse_probes(
            &ctx.machine.succeed(&probe_script(
                &ports
                    .iter()
                    .map(|p| (gateway.clone(), *p))
                    .collect::<Vec<_>>(),
            ))?,
        );
        if let Some(p) = found.iter().find(|p| p.answered()) {
            targets.push((gateway.clone(), p.port));
        } else {
            ctx.notes.push(format!(
                "LAT-1: the guest's default gateway {gateway} answered none of {ports:?} from the guest; not a usable target"
            ));
        }
    }
    let baseline = parse_probes(&ctx.machine.succeed(&probe_script(&targets))?);
    let (status, out) = in_sandbox(ctx, sb, &probe_script(&targets))?;
    let from_sandbox = parse_probes(&out);
    if from_sandbox.len() != targets.len() {
        bail!(
            "the probe in {} answered {} of {} targets (exit {status}): {out}",
            sb.name,
            from_sandbox.len(),
            targets.len()
        );
    }

    let mut problems = Vec::new();
    let mut lines = vec![sb.origin.clone()];
    let mut tested = 0;
    for (host, port) in &targets {
        let base = baseline.iter().find(|p| &p.host == host && p.port == *port);
        let inner = from_sandbox
            .iter()
            .find(|p| &p.host == host && p.port == *port);
        let (Some(base), Some(inner)) = (base, inner) else {
            continue;
        };
        if base.answered() {
            tested += 1;
        }
        if inner.answered() {
            problems.push(format!("{host}:{port} ({})", inner.verdict));
        }
        lines.push(format!("  {inner}   (from the guest: {})", base.verdict));
    }
    let silent: Vec<String> = baseline
        .iter()
        .filter(|p| {
            (peers.contains(&p.host.as_str()) || tailnet_peer.as_deref() == Some(p.host.as_str()))
                && !p.answered()
        })
        .map(|p| p.to_string())
        .collect();
    if !silent.is_empty() {
        bail!(
            "LAT-1's planted peers (and the tailnet node, if any) do not answer even the guest, so probing them from the sandbox proves nothing: {}",
            silent.join(", ")
        );
    }
    if let Some(ip) = &tailnet_peer {
        lines.push(format!(
            "  the tailnet peer {ip} is a real node of the test tailnet (reached over tailscale0); tailnet addresses are not planted"
        ));
    }
    let head = format!(
        "{tested} of {} target(s) answer the guest itself; from the sandbox \
         (open or refused = reachable):",
        targets.len()
    );
    lines.insert(1, head);
    Ok(if problems.is_empty() {
        Outcome::Pass(lines.join("\n"))
    } else {
        Outcome::Fail(format!(
            "the sandbox reaches {} (needs a firewall rule for sandbox egress)\n{}",
            problems.join(", "),
            lines.join("\n")
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_exposes(source: &str, path: &str, expected: bool) {
        assert_eq!(exposes(source, path), expected, "{source} vs {path}");
    }

    #[test]
    fn bind_sources_that_expose_a_path() {
        check_exposes("/var/run/docker.sock", "/var/run/docker.sock", true);
        check_exposes("/var/run", "/var/run/docker.sock", true);
        check_exposes("/", "/home/openclaw/.ssh", true);
        check_exposes("/home/openclaw", "/home/openclaw/.openclaw", true);
        check_exposes(
            "/home/openclaw/.openclaw/workspace",
            "/home/openclaw/.openclaw",
            true,
        );
        check_exposes(
            "/home/openclaw/.openclawx",
            "/home/openclaw/.openclaw",
            false,
        );
        check_exposes("/srv/data", "/home/openclaw/.ssh", false);
    }

    fn container(binds: Value, extra: Value) -> Value {
        let mut hc = json!({
            "CapDrop": ["ALL"],
            "CapAdd": null,
            "SecurityOpt": ["no-new-privileges"],
            "Privileged": false,
            "NetworkMode": "bridge",
            "Tmpfs": {"/tmp": "", "/var/tmp": "", "/run": ""},
        });
        if let (Some(h), Some(e)) = (hc.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                h.insert(k.clone(), v.clone());
            }
        }
        json!({"HostConfig": hc, "Config": {"User": "1000:1000"}, "Mounts": binds})
    }

    fn bind(src: &str, dst: &str) -> Value {
        json!({"Type": "bind", "Source": src, "Destination": dst, "RW": true})
    }

    #[test]
    fn judges_the_gateway_container() {
        let home = "/home/openclaw";
        let ok = container(
            json!([
                bind("/home/openclaw/.openclaw/workspace", "/workspace"),
                bind(
                    "/home/openclaw/.openclaw/sandbox/skills-workspaces/w/.openclaw/sandbox-skills/skills",
                    "/workspace/.openclaw/sandbox-skills/skills"
                ),
            ]),
            json!({}),
        );
        let (_, problems) = judge_container(&ok, home);
        assert!(problems.is_empty(), "{problems:?}");

        for (binds, extra, needle) in [
            (
                json!([
                    bind("/home/openclaw/.openclaw/workspace", "/workspace"),
                    bind("/var/run/docker.sock", "/var/run/docker.sock")
                ]),
                json!({}),
                "docker.sock",
            ),
            (
                json!([bind("/home/openclaw/.openclaw", "/workspace")]),
                json!({}),
                ".openclaw",
            ),
            (
                json!([
                    bind("/home/openclaw/.openclaw/workspace", "/workspace"),
                    bind("/home/openclaw", "/h")
                ]),
                json!({}),
                ".openclaw",
            ),
            (
                json!([
                    bind("/home/openclaw/.openclaw/workspace", "/workspace"),
                    bind("/home/openclaw/.ssh", "/s")
                ]),
                json!({}),
                ".ssh",
            ),
            (
                json!([
                    bind("/home/openclaw/.openclaw/workspace", "/workspace"),
                    bind("/home/openclaw/.openclaw/credentials", "/c")
                ]),
                json!({}),
                ".openclaw",
            ),
            (json!([]), json!({}), "/workspace"),
            (
                json!([bind("/x", "/workspace")]),
                json!({"CapDrop": ["NET_RAW"]}),
                "CapDrop",
            ),
            (
                json!([bind("/x", "/workspace")]),
                json!({"SecurityOpt": []}),
                "no-new-privileges",
            ),
            (
                json!([bind("/x", "/workspace")]),
                json!({"Privileged": true}),
                "Privileged",
            ),
            (
                json!([bind("/x", "/workspace")]),
                json!({"NetworkMode": "host"}),
                "NetworkMode",
            ),
            (
                json!([bind("/x", "/workspace")]),
                json!({"Tmpfs": {"/run": ""}}),
                "Tmpfs",
            ),
        ] {
            let (_, problems) = judge_container(&container(binds, extra), home);
            assert!(
                problems.iter().any(|p| p.contains(needle)),
                "{needle}: {problems:?}"
            );
        }
    }

    #[test]
    fn parses_probe_lines() {
        let text = "noise\nPROBE 127.0.0.1 18789 refused Connection refused\n\
                    PROBE fd7a:115c:a1e0::1 80 unreachable Network is unreachable\n\
                    PROBE 100.64.0.1 80 open -\nPROBE 172.17.0.1 18789 timeout no answer in 5 s\n";
        let probes = parse_probes(text);
        assert_eq!(probes.len(), 4);
        assert!(probes[2].open());
        assert!(!probes[0].open());
        assert_eq!(probes[1].host, "fd7a:115c:a1e0::1");
        assert_eq!(
            probes[1].to_string(),
            "[fd7a:115c:a1e0::1]:80 unreachable (Network is unreachable)"
        );
        assert_eq!(
            probes[3].to_string(),
            "172.17.0.1:18789 timeout (no answer in 5 s)"
        );
    }

    #[test]
    fn finds_node_exec_anywhere() {
        let mut out = Vec::new();
        find_exec_node(
            &json!({"tools": {"exec": {"host": "sandbox"}}, "agents": {"entries": [{"tools": {"exec": {"node": "mac"}}}]}}),
            "",
            &mut out,
        );
        assert_eq!(out, vec!["agents.entries[0].tools.exec.node"]);
        out.clear();
        find_exec_node(
            &json!({"tools": {"exec": {"host": "sandbox"}}}),
            "",
            &mut out,
        );
        assert!(out.is_empty());
    }

    #[test]
    fn the_allow_list_keeps_the_standard_groups_and_no_host_side_tool() {
        let appliance = [
            "group:fs",
            "group:runtime",
            "group:web",
            "group:memory",
            "group:sessions",
            "group:ui",
            "group:messaging",
            "heartbeat_respond",
        ];
        assert_eq!(allow_list_problems(&appliance), Vec::<String>::new());
        // The seed's list: the standard groups and the two host-side ones.
        let seed: Vec<&str> = STANDARD_GROUPS
            .iter()
            .chain(HOST_SIDE_GROUPS)
            .copied()
            .collect();
        assert_eq!(
            allow_list_problems(&seed),
            [
                "allows host-side group:automation",
                "allows host-side group:nodes"
            ]
        );
        let problems = allow_list_problems(&["group:fs", "cron", "*"]);
        assert!(problems.contains(&"missing group:runtime".to_string()));
        assert!(problems.contains(&"allows host-side cron".to_string()));
        assert!(problems.contains(&"allows host-side *".to_string()));
    }

    #[test]
    fn config_lines_name_the_key() {
        let c = json!({"a": {"b": "x"}});
        assert_eq!(
            config_line(&c, "/a/b", &json!("x")),
            (true, "a.b = \"x\"".into())
        );
        assert!(
            config_line(&c, "/a/b", &json!("y"))
                .1
                .contains("expected \"y\"")
        );
        assert!(
            config_line(&c, "/a/c", &json!(1))
                .1
                .contains("a.c is not set")
        );
    }

    #[test]
    fn reads_why_an_agent_turn_failed() {
        let out = "{\n  \"ok\": false,\n  \"error\": {\n    \"type\": \"cli_error\",\n    \"message\": \"No route-compatible authentication source is configured for openai.\"\n  }\n}\n[openclaw] The CLI command failed.\n";
        assert_eq!(
            turn_reason(out),
            "No route-compatible authentication source is configured for openai."
        );
        assert_eq!(turn_reason("a\n\nb\nc\nd\n"), "b | c | d");
    }

    #[test]
    fn the_lat_namespace_routes_only_planted_hosts() {
        let script = lat_setup_script(LAT_PEERS);
        for peer in LAT_PEERS {
            assert!(script.contains(peer), "{peer}");
        }
        // With a real tailnet, no tailnet address is planted.
        let private = lat_peers(true);
        assert_eq!(private, ["10.200.0.10", "172.31.200.10", "192.168.200.10"]);
        assert_eq!(lat_peers(false), LAT_PEERS);
        assert!(!lat_setup_script(&private).contains("100.64.0.1"));
        // Host routes only: the guest's real networks keep their routes.
        for line in script.lines().filter(|l| l.starts_with("ip route add")) {
            assert!(line.contains("/32 dev vmt-lat0"), "{line}");
        }
        assert!(!script.contains("default dev vmt-lat0"));
    }
}
