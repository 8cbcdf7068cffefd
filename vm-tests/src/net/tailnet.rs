//! The test tailnet (issue 17): Tailscale's own test control server, a DERP
//! relay and STUN in the peer's namespace, and an "admin laptop" node that
//! reaches the appliance through the tailnet (TS-1, NET-5, NET-8, SSH-3).
//!
//! The Go program lives in `vm-tests/tailnet/` with its own `go.mod` and
//! `go.sum` (`tailscale.com` at the image's version); [`build_program`]
//! compiles it with the host's `go`, cached under the run's output directory
//! by the hash of its sources. [`TestTailnet::start`] runs its `control`
//! subcommand inside the peer's namespace on [`CONTROL_ADDR`] and reads the
//! JSON line it prints. The guest is pointed at [`control_url`] by the
//! user-data field `tailscale-login-server`, with the run's auth key; the
//! URL is fixed so the user-data can be written before the network exists.
//!
//! Secrets never go on a command line: the auth key and a bearer token
//! reach the Go program as 0600 files in the tailnet's private directory.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use super::{PEER_IP, TestNet, run_command, stop_child};
use hostutil::die_with_parent;

/// The control server's port on the peer's external address.
pub const CONTROL_PORT: u16 = 8380;

/// The control server's address (the peer's, on the external network).
pub const CONTROL_ADDR: (std::net::Ipv4Addr, u16) = (PEER_IP, CONTROL_PORT);

/// The Go program's folder.
pub fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tailnet")
}

/// The control server's URL as the guest reaches it.
pub fn control_url() -> String {
    format!("http://{}:{}", CONTROL_ADDR.0, CONTROL_ADDR.1)
}

/// The cache key of the program: sha256 over the name and bytes of every
/// file in its folder (sources, go.mod, go.sum), in name order.
fn sources_key(dir: &Path) -> Result<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    if !names.iter().any(|n| n == "go.sum") {
        bail!(
            "{} has no go.sum: the test tailnet's modules must be pinned",
            dir.display()
        );
    }
    let mut h = Sha256::new();
    for name in &names {
        let path = dir.join(name);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        h.update(name.as_bytes());
        h.update([0]);
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    Ok(h.finalize()
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Builds the Go program into `<cache>/tailnet-<key>/tailnet` unless that
/// exists (the key hashes its sources and go.sum); returns its path. Uses
/// the host's `go` (`cargo xtask doctor` checks it) with
/// `GOFLAGS=-mod=readonly`, `CGO_ENABLED=0`, `-trimpath` and
/// `-buildvcs=false` (the worktree's git state is no input); a missing
/// module is fetched from the host's `GOPROXY` on the first build.
pub fn build_program(cache: &Path) -> Result<PathBuf> {
    let src = source_dir();
    let key = sources_key(&src)?;
    let dir = cache.join(format!("tailnet-{key}"));
    let bin = dir.join("tailnet");
    if bin.is_file() {
        return Ok(bin);
    }
    std::fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix("tailnet-build-")
        .tempdir_in(cache)
        .with_context(|| format!("creating a build directory in {}", cache.display()))?;
    run_command(
        Command::new("go")
            .args(["build", "-trimpath", "-buildvcs=false", "-o"])
            .arg(tmp.path().join("tailnet"))
            .arg(".")
            .current_dir(&src)
            .env("CGO_ENABLED", "0")
            .env("GOFLAGS", "-mod=readonly")
            .env("GOWORK", "off"),
    )
    .with_context(|| {
        format!(
            "building the test tailnet in {} (needs `go`: run `cargo xtask doctor`)",
            src.display()
        )
    })?;
    let built = tmp.keep();
    std::fs::rename(&built, &dir)
        .or_else(|e| if bin.is_file() { Ok(()) } else { Err(e) })
        .with_context(|| format!("moving the test tailnet into {}", dir.display()))?;
    Ok(bin)
}

/// What `tailnet control` prints once it serves.
#[derive(Debug, Clone, Deserialize)]
pub struct ControlInfo {
    /// The control server's URL.
    pub control_url: String,
    /// The DERP relay's host (the peer's address).
    pub derp_host: String,
    /// The DERP relay's TLS port.
    pub derp_port: u16,
    /// The STUN port.
    pub stun_port: u16,
    /// Whether the control grants Funnel to the tailnet's nodes. It does:
    /// testcontrol panics on the feature query a node sends without the
    /// grant, so TS-2 must show the appliance refusing Funnel itself.
    pub funnel: bool,
}

/// Parses `tailnet control`'s JSON line.
pub fn parse_control_info(line: &str) -> Result<ControlInfo> {
    serde_json::from_str(line.trim()).with_context(|| {
        format!(
            "the test control server printed {:?}, not its JSON line",
            line.trim()
        )
    })
}

/// One registration decision of the test control server: a line of the
/// file its `-register-log` names (`vm-tests/tailnet/register.go`). A new
/// node key needs the run's auth key; a known, unexpired one re-registers
/// without it, as with Tailscale's own control server.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Registration {
    /// When the request came (RFC 3339, UTC).
    pub time: String,
    /// The node key that registered (`nodekey:…`).
    pub node_key: String,
    /// The node key it replaces, on a key rotation.
    #[serde(default)]
    pub old_node_key: String,
    /// Whether the request carried an auth key (valid or not).
    pub auth_key_presented: bool,
    /// Whether that was the run's auth key.
    #[serde(default)]
    pub auth_key_valid: bool,
    /// Whether the node key was already a registered, unexpired node.
    pub known: bool,
    /// Whether the control server accepted the registration.
    pub accepted: bool,
    /// Why, in words.
    #[serde(default)]
    pub reason: String,
}

impl Registration {
    /// A known node that came back without the auth key, accepted: what a
    /// rebuilt appliance with its saved tailscaled state should produce.
    pub fn is_keyless_relogin(&self) -> bool {
        self.accepted && self.known && !self.auth_key_presented
    }
}

/// Parses the control server's registration log (JSON lines; blank lines
/// skipped). A line that is not a decision is an error naming it.
pub fn parse_registrations(text: &str) -> Result<Vec<Registration>> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line.trim()).with_context(|| {
                format!(
                    "line {} of the test control server's registration log is not a decision: {:?}",
                    i + 1,
                    line.trim()
                )
            })
        })
        .collect()
}

/// What an admin operation reports (`ok`: the operation itself worked).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct AdminResult {
    /// The operation succeeded (connected, answered, the command exited 0).
    #[serde(default)]
    pub ok: bool,
    /// The admin node's own tailnet addresses (`up`).
    #[serde(default, rename = "self")]
    pub self_ips: Vec<String>,
    /// The nodes the admin sees (`up`).
    #[serde(default)]
    pub peers: Vec<AdminPeer>,
    /// HTTP status (`http`) or remote exit status (`ssh`).
    #[serde(default)]
    pub status: u16,
    /// What came back (reply, body start, command output).
    #[serde(default)]
    pub output: String,
    /// Why the operation failed, if it did.
    #[serde(default)]
    pub error: String,
}

/// A node in the admin's netmap.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct AdminPeer {
    /// Its host name.
    pub hostname: String,
    /// Its tailnet addresses.
    pub ips: Vec<String>,
    /// Whether control says it is online.
    pub online: bool,
}

/// Parses an admin operation's JSON line.
pub fn parse_admin_result(line: &str) -> Result<AdminResult> {
    serde_json::from_str(line.trim()).with_context(|| {
        format!(
            "the admin node printed {:?}, not its JSON line",
            line.trim()
        )
    })
}

/// The running test tailnet; stopped on drop.
#[derive(Debug)]
pub struct TestTailnet {
    binary: PathBuf,
    peer_ns: String,
    dir: TempDir,
    control: Option<Child>,
    info: ControlInfo,
}

/// The control server's registration decisions, in its directory.
const REGISTER_LOG: &str = "registrations.jsonl";

/// How long the control server may take to print its line.
const START_TIMEOUT: Duration = Duration::from_secs(30);

impl TestTailnet {
    /// Starts the control server, DERP and STUN in `net`'s peer namespace,
    /// every new node key required to present `auth_key` (written to a 0600
    /// file, never on a command line; a known node key re-registers
    /// without it, see [`Registration`]); its decisions go to a file in
    /// its directory ([`TestTailnet::registrations`]). Needs the program
    /// from [`build_program`].
    pub fn start(net: &TestNet, binary: &Path, auth_key: &str) -> Result<TestTailnet> {
        let dir = tempfile::Builder::new()
            .prefix("vmtest-tailnet-")
            .tempdir()
            .context("creating the test tailnet's directory")?;
        write_private(&dir.path().join("authkey"), auth_key)?;
        let log = std::fs::File::create(dir.path().join("control.log"))
            .context("creating the test control server's log")?;
        let listen = format!("{}:{}", CONTROL_ADDR.0, CONTROL_ADDR.1);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", net.peer_netns()])
            .arg(binary)
            // -v: testcontrol's and DERP's own messages go to control.log
            // too (kept beside the serial logs): a login that never
            // completes is diagnosed from both sides.
            .args(["control", "-v", "-listen", &listen, "-authkey-file"])
            .arg(dir.path().join("authkey"))
            .arg("-register-log")
            .arg(dir.path().join(REGISTER_LOG))
            .env("TS_NO_LOGS_NO_SUPPORT", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        die_with_parent(&mut cmd);
        let mut child = cmd
            .spawn()
            .context("starting the test control server in the peer's namespace")?;
        let line = child.stdout.take().map(first_line);
        let line = match line.map(|rx| rx.recv_timeout(START_TIMEOUT)) {
            Some(Ok(Ok(line))) if !line.trim().is_empty() => line,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                let log =
                    std::fs::read_to_string(dir.path().join("control.log")).unwrap_or_default();
                bail!(
                    "the test control server did not print its JSON line within {START_TIMEOUT:?} ({}); its log:\n{}",
                    match other {
                        Some(Ok(Err(e))) => format!("{e:#}"),
                        Some(Err(_)) => "timed out".into(),
                        _ => "it closed stdout".into(),
                    },
                    tail(&log, 20)
                );
            }
        };
        let info = parse_control_info(&line)?;
        if info.control_url != control_url() {
            bail!(
                "the test control server serves {}, not {} (the URL the user-data names)",
                info.control_url,
                control_url()
            );
        }
        Ok(TestTailnet {
            binary: binary.to_path_buf(),
            peer_ns: net.peer_netns().to_string(),
            dir,
            control: Some(child),
            info,
        })
    }

    /// What the control server said about itself.
    pub fn info(&self) -> &ControlInfo {
        &self.info
    }

    /// Copies the control server's log and its registration decisions
    /// into `dest` (`tailnet-control.log`, `tailnet-registrations.jsonl`)
    /// with `redact` applied, so that a failed run can be read after its
    /// directory is gone. Returns the files written.
    pub fn keep_logs(&self, dest: &Path, redact: impl Fn(&str) -> String) -> Vec<PathBuf> {
        let mut kept = Vec::new();
        for (from, to) in [
            ("control.log", "tailnet-control.log"),
            (REGISTER_LOG, "tailnet-registrations.jsonl"),
        ] {
            let Ok(text) = std::fs::read_to_string(self.dir.path().join(from)) else {
                continue;
            };
            let path = dest.join(to);
            if std::fs::write(&path, redact(&text)).is_ok() {
                kept.push(path);
            }
        }
        kept
    }

    /// The last `n` lines of the control server's log.
    pub fn log_tail(&self, n: usize) -> String {
        tail(
            &std::fs::read_to_string(self.dir.path().join("control.log")).unwrap_or_default(),
            n,
        )
    }

    /// The control server's registration decisions so far, oldest first
    /// (see [`Registration`]); none yet is an empty list.
    pub fn registrations(&self) -> Result<Vec<Registration>> {
        let path = self.dir.path().join(REGISTER_LOG);
        match std::fs::read_to_string(&path) {
            Ok(text) => parse_registrations(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Why the control server (and DERP with it) is gone, if it is: the
    /// tail of its log. testcontrol panics on a request it does not handle
    /// (e.g. the feature query a node sends for Funnel without the
    /// attribute), which ends the whole tailnet for the rest of the pass.
    pub fn control_gone(&self) -> Option<String> {
        let pid = self.control.as_ref()?.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if !process_ended(&stat) {
            return None;
        }
        Some(format!(
            "the test control server has exited; its log:\n{}",
            self.log_tail(12)
        ))
    }

    /// Runs one admin operation (`up`, `dial HOST:PORT`, `http METHOD URL
    /// …`, `ssh USER HOST:PORT COMMAND`) as the admin node, from the peer's
    /// namespace; `bearer` goes to the program as a 0600 file, removed
    /// afterwards. An `Err` means the admin node itself failed (login,
    /// usage); an unreachable target is an `ok: false` result.
    pub fn admin(&self, op: &[&str], bearer: Option<&str>) -> Result<AdminResult> {
        let bearer_path = self.dir.path().join("bearer");
        let mut extra: Vec<String> = Vec::new();
        if let Some(token) = bearer {
            write_private(&bearer_path, token)?;
            extra = vec!["-bearer-file".into(), bearer_path.display().to_string()];
        }
        let (mut cmd, _state) = self.admin_command(Duration::from_secs(120))?;
        let out = cmd
            .args(op)
            .args(&extra)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running the admin node ({})", op.join(" ")));
        if bearer.is_some() {
            let _ = std::fs::remove_file(&bearer_path);
        }
        let out = out?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "the admin node failed ({}; {}): {}{}",
                op.join(" "),
                out.status,
                tail(&String::from_utf8_lossy(&out.stderr), 10),
                self.control_gone()
                    .map(|why| format!("\n{why}"))
                    .unwrap_or_default()
            );
        }
        parse_admin_result(stdout.lines().last().unwrap_or(""))
    }
}

impl TestTailnet {
    /// The admin program's command line up to the operation, with a fresh
    /// state directory (returned: it lives as long as the node). A fresh
    /// node per call: the test control server wants the auth key at every
    /// registration, and a node starting from saved state registers without
    /// it (it then waits for an interactive login).
    fn admin_command(&self, limit: Duration) -> Result<(Command, TempDir)> {
        let state = tempfile::Builder::new()
            .prefix("admin-state-")
            .tempdir_in(self.dir.path())
            .context("creating the admin node's state directory")?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.peer_ns])
            .arg(&self.binary)
            .args(["admin", "-control", &self.info.control_url, "-authkey-file"])
            .arg(self.dir.path().join("authkey"))
            .arg("-state")
            .arg(state.path())
            .arg("-timeout")
            .arg(format!("{}s", limit.as_secs().max(1)))
            .env("TS_NO_LOGS_NO_SUPPORT", "true");
        Ok((cmd, state))
    }

    /// Starts an admin node that accepts TCP on `port` of its tailnet
    /// addresses (answering one line) for up to `life`: a tailnet peer for
    /// LAT-1 to reach. Returns once it listens; dropping it stops it.
    pub fn admin_listener(&self, port: u16, life: Duration) -> Result<AdminListener> {
        let (mut cmd, state) = self.admin_command(life)?;
        let log_path = state.path().join("listener.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        cmd.args(["listen", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        die_with_parent(&mut cmd);
        let mut child = cmd
            .spawn()
            .context("starting the admin node's listener in the peer's namespace")?;
        let line = child.stdout.take().map(first_line);
        match line.map(|rx| rx.recv_timeout(Duration::from_secs(120))) {
            Some(Ok(Ok(line))) if !line.trim().is_empty() => {
                let result = parse_admin_result(&line)?;
                Ok(AdminListener {
                    child,
                    ips: result.self_ips,
                    _state: state,
                })
            }
            other => {
                stop_child(&mut child);
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                bail!(
                    "the admin node did not listen on tailnet port {port} ({}); its log:\n{}{}",
                    match other {
                        Some(Ok(Err(e))) => format!("{e:#}"),
                        Some(Err(_)) => "timed out after 120 s".into(),
                        _ => "it closed stdout".into(),
                    },
                    tail(&log, 20),
                    self.control_gone()
                        .map(|why| format!("\n{why}"))
                        .unwrap_or_default()
                )
            }
        }
    }
}

/// An admin node listening on the tailnet ([`TestTailnet::admin_listener`]);
/// stopped when dropped.
pub struct AdminListener {
    child: Child,
    /// The node's tailnet addresses (IPv4 first, as Tailscale lists them).
    pub ips: Vec<String>,
    _state: TempDir,
}

impl Drop for AdminListener {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

impl Drop for TestTailnet {
    fn drop(&mut self) {
        // `ip netns exec` execs the program: the child's pid is the server's.
        if let Some(mut child) = self.control.take() {
            stop_child(&mut child);
        }
    }
}

/// Writes `text` to a new 0600 file.
fn write_private(path: &Path, text: &str) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    std::io::Write::write_all(&mut f, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Reads the first line of `out` on a thread (the caller waits with a timeout).
fn first_line(out: impl Read + Send + 'static) -> mpsc::Receiver<Result<String>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let r = BufReader::new(out)
            .read_line(&mut line)
            .map(|_| line)
            .context("reading the control server's stdout");
        let _ = tx.send(r);
    });
    rx
}

/// Whether a `/proc/<pid>/stat` text (empty: no such process) shows a
/// process that has ended (a zombie not yet reaped, or gone).
fn process_ended(stat: &str) -> bool {
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or("X");
    state == "Z" || state == "X"
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_parse() {
        let text = r#"{"time":"2026-12-07T14:38:58.13Z","node_key":"nodekey:a0aa","auth_key_presented":true,"auth_key_valid":true,"known":false,"accepted":true,"reason":"auth key"}

{"time":"2026-12-07T14:40:01.5Z","node_key":"nodekey:a0aa","auth_key_presented":false,"auth_key_valid":false,"known":true,"accepted":true,"reason":"known node key, no auth key"}
{"time":"2026-12-07T14:40:02Z","node_key":"nodekey:b1bb","old_node_key":"nodekey:a0aa","auth_key_presented":false,"auth_key_valid":false,"known":false,"accepted":false,"reason":"no auth key for a new node key"}
"#;
        let regs = parse_registrations(text).unwrap();
        assert_eq!(regs.len(), 3);
        assert!(!regs[0].is_keyless_relogin());
        assert!(regs[0].auth_key_valid);
        assert!(regs[1].is_keyless_relogin());
        assert_eq!(regs[1].node_key, "nodekey:a0aa");
        assert!(!regs[2].is_keyless_relogin());
        assert_eq!(regs[2].old_node_key, "nodekey:a0aa");
        assert_eq!(regs[2].reason, "no auth key for a new node key");
        assert!(parse_registrations("").unwrap().is_empty());
        let err = parse_registrations("{\"time\":\"x\"}\n").unwrap_err();
        assert!(format!("{err:#}").contains("line 1"), "{err:#}");
    }

    #[test]
    fn an_ended_control_server_is_seen() {
        assert!(!process_ended("4242 (tailnet) S 1 4242 4242 0 -1"));
        assert!(!process_ended("4242 (a) b) R 1 4242"));
        assert!(process_ended("4242 (tailnet) Z 1 4242 4242 0 -1"));
        assert!(process_ended(""));
        let me = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(!process_ended(&me));
    }

    #[test]
    fn control_info_from_the_programs_line() {
        let line = r#"{"control_url":"http://10.77.0.99:8380","derp_host":"10.77.0.99","derp_port":33277,"stun_port":40243,"funnel":false,"ssh_policy":"any"}"#;
        let info = parse_control_info(line).unwrap();
        assert_eq!(info.control_url, control_url());
        assert_eq!(
            (info.derp_port, info.stun_port, info.funnel),
            (33277, 40243, false)
        );
        assert!(parse_control_info("listening…").is_err());
    }

    #[test]
    fn admin_results() {
        let up = parse_admin_result(
            r#"{"ok":true,"self":["100.64.0.2"],"peers":[{"hostname":"claw","ips":["100.64.0.1"],"online":true}]}"#,
        )
        .unwrap();
        assert_eq!(up.self_ips, ["100.64.0.2"]);
        assert_eq!(up.peers[0].hostname, "claw");
        let http =
            parse_admin_result(r#"{"ok":true,"status":401,"output":"unauthorized"}"#).unwrap();
        assert_eq!((http.ok, http.status), (true, 401));
        let dial = parse_admin_result(r#"{"ok":false,"error":"connection refused"}"#).unwrap();
        assert!(!dial.ok && dial.error.contains("refused"));
    }

    #[test]
    fn the_cache_key_follows_the_sources() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["go.mod", "go.sum", "main.go"] {
            std::fs::write(dir.path().join(name), name).unwrap();
        }
        let a = sources_key(dir.path()).unwrap();
        std::fs::write(dir.path().join("go.sum"), "other").unwrap();
        let b = sources_key(dir.path()).unwrap();
        assert_ne!(a, b);
        std::fs::write(dir.path().join("more.go"), "package main").unwrap();
        assert_ne!(b, sources_key(dir.path()).unwrap());
        std::fs::remove_file(dir.path().join("go.sum")).unwrap();
        assert!(sources_key(dir.path()).is_err());
        assert_eq!(sources_key(&source_dir()).unwrap().len(), 24);
    }

    #[test]
    fn secrets_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        write_private(&p, "tskey-auth-x").unwrap();
        write_private(&p, "tskey-auth-y").unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "tskey-auth-y");
    }
}
