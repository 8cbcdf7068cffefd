//! The guest command channel, added from outside the image.
//!
//! # How the guest gets a shell
//!
//! The image carries no test backdoor. At boot QEMU hands systemd two
//! credentials in SMBIOS type 11 strings (see [`crate::credential`]):
//!
//! - `systemd.extra-unit.vmtest-shell.service`: the unit of [`unit_text`],
//! - `systemd.unit-dropin.sysinit.target`: `Wants=vmtest-shell.service`.
//!
//! systemd-debug-generator (systemd ≥ 256) writes them to
//! `/run/systemd/generator.early/` (the drop-in as
//! `sysinit.target.d/50-credential.conf`), so the unit exists for this boot
//! only, in RAM, and starts as soon as udev announces the virtio-serial port
//! `/dev/virtio-ports/org.openclaw.vmtest.shell`. The unit opens that port
//! once, read-write, as fd 3 (a virtio-serial port can be open only once) and
//! runs `bash` with stdin, stdout and stderr on it. On the host the port is a
//! unix socket that QEMU listens on.
//!
//! # Protocol
//!
//! The host sends one wrapper line per command ([`wrap_command`]), followed
//! by the command itself as a quoted here-document whose delimiter holds a
//! fresh id. The command runs in `bash -euo pipefail` under `timeout -k 5`,
//! with stdin from `/dev/null`, stdout and stderr into two files under
//! `/run/vmtest-shell` (tmpfs; emptied afterwards). Then the guest shell
//! prints a frame:
//!
//! ```text
//!
//! @@vmtest@@ out <id>
//! <stdout, base64, 76 columns>
//! @@vmtest@@ err <id>
//! <stderr, base64>
//! @@vmtest@@ end <id> <exit status>
//! ```
//!
//! Base64 makes any output (NUL bytes, no trailing newline, text that looks
//! like a marker) unambiguous. Each command has a fresh id, so output of an
//! earlier command that the host gave up on is recognized and skipped.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hostutil::shell_quote;

use crate::credential::Credential;
use crate::log::{Log, secs};
use crate::qemu::SHELL_PORT_NAME;

/// The unit that runs the guest end of the channel.
pub const UNIT_NAME: &str = "vmtest-shell.service";

/// The unit the harness's drop-in extends with `Wants=` [`UNIT_NAME`].
pub const WANTED_BY: &str = "sysinit.target";

/// The first word of every frame line.
pub const MARKER: &str = "@@vmtest@@";

/// Extra time the host waits beyond a command's own timeout (the guest's
/// `timeout -k 5` needs up to 5 s more, and the frame has to travel).
pub const HOST_GRACE: Duration = Duration::from_secs(15);

/// The systemd device unit of the channel's port (`systemd-escape --path`
/// of `/dev/virtio-ports/<port>`).
pub fn device_unit() -> String {
    format!(
        "dev-virtio\\x2dports-{}.device",
        SHELL_PORT_NAME.replace('-', "\\x2d")
    )
}

/// The text of [`UNIT_NAME`].
///
/// `DefaultDependencies=no` and `WantedBy` sysinit.target (via the drop-in)
/// start the shell early, so a boot that never reaches multi-user.target can
/// still be inspected. Not in the initrd (no port device there).
pub fn unit_text() -> String {
    let device = device_unit();
    format!(
        "# Added by the vm-tests harness through a systemd credential; not part of the image.\n\
         [Unit]\n\
         Description=vm-tests command channel (added from outside the image)\n\
         DefaultDependencies=no\n\
         IgnoreOnIsolate=yes\n\
         ConditionPathExists=!/etc/initrd-release\n\
         BindsTo={device}\n\
         After={device}\n\
         Conflicts=shutdown.target\n\
         Before=shutdown.target\n\
         StartLimitIntervalSec=0\n\
         \n\
         [Service]\n\
         Type=exec\n\
         Environment=HOME=/root TERM=dumb LC_ALL=C.UTF-8 SYSTEMD_PAGER=cat PAGER=cat SYSTEMD_COLORS=0\n\
         # `docker` talks to the daemon OpenClaw's sandboxes run on.\n\
         Environment=DOCKER_HOST={DOCKER_HOST}\n\
         WorkingDirectory=-/root\n\
         ExecStart=/bin/bash --noprofile --norc -c 'exec 3<>/dev/virtio-ports/{SHELL_PORT_NAME} && exec /bin/bash --noprofile --norc <&3 >&3 2>&3 3>&-'\n\
         Restart=always\n\
         RestartSec=1\n"
    )
}

/// The image's sandbox container daemon (rootless Docker, appliance
/// `files::sandbox_runtime::DOCKER_HOST`): every `docker` command of the
/// suite goes to it, as OpenClaw's own do.
pub const DOCKER_HOST: &str = "unix:///run/openclaw-sandbox/docker.sock";

/// The drop-in for [`WANTED_BY`] that pulls the shell unit into the boot
/// (generated units cannot be enabled with `[Install]`).
pub fn dropin_text() -> String {
    format!("# Added by the vm-tests harness.\n[Unit]\nWants={UNIT_NAME}\n")
}

/// The two credentials that install the channel in the guest.
pub fn credentials() -> Result<Vec<Credential>> {
    Ok(vec![
        Credential::new(format!("systemd.extra-unit.{UNIT_NAME}"), unit_text())?,
        Credential::new(format!("systemd.unit-dropin.{WANTED_BY}"), dropin_text())?,
    ])
}

/// The guest directory (tmpfs) where a command's output waits until framed.
pub const RUN_DIR: &str = "/run/vmtest-shell";

/// The text the host sends to run `command` with a guest-side `timeout`
/// (whole seconds, at least 1). The output comes back framed with `id`.
///
/// The script travels as a quoted here-document (no expansion at all) whose
/// delimiter contains `id`; should the script contain that very line, it
/// travels base64-encoded instead. Every program started costs tens of
/// milliseconds under TCG, so the wrapper uses shell builtins where it can:
/// `timeout`, `bash` and one `base64` per non-empty output are all it runs.
pub fn wrap_command(id: &str, command: &str, timeout: Duration) -> String {
    wrap_command_in(RUN_DIR, id, command, timeout)
}

/// [`wrap_command`] with another output directory (for tests on the host).
fn wrap_command_in(run_dir: &str, id: &str, command: &str, timeout: Duration) -> String {
    let secs = timeout.as_secs_f64().ceil().max(1.0) as u64;
    let dir = shell_quote(run_dir);
    let out = shell_quote(&format!("{run_dir}/out"));
    let err = shell_quote(&format!("{run_dir}/err"));
    let delimiter = format!("{MARKER}{id}");
    let mut script = command.to_owned();
    if !script.ends_with('\n') {
        script.push('\n');
    }
    let (source, heredoc) = if script.lines().any(|l| l == delimiter) {
        let b64 = STANDARD.encode(command);
        (format!("<(printf %s {b64} | base64 -d)"), String::new())
    } else {
        (
            format!("/dev/fd/3 3<<'{delimiter}'"),
            format!("{script}{delimiter}\n"),
        )
    };
    let first = format!(
        "[ -d {dir} ] || mkdir -m 0700 {dir}; \
         timeout -k 5 {secs} bash --noprofile --norc -euo pipefail {source} </dev/null >{out} 2>{err}; \
         __vt_s=$?; \
         printf '\\n{MARKER} out %s\\n' {id}; [ -s {out} ] && base64 -w 76 {out}; \
         printf '{MARKER} err %s\\n' {id}; [ -s {err} ] && base64 -w 76 {err}; \
         printf '{MARKER} end %s %d\\n' {id} \"$__vt_s\"; : >{out}; : >{err}\n"
    );
    format!("{first}{heredoc}")
}

/// What a command printed and how it exited.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandOutput {
    /// Exit status (124 or 137: killed by the guest-side `timeout`).
    pub status: i32,
    /// Standard output, byte-exact.
    pub stdout: Vec<u8>,
    /// Standard error, byte-exact.
    pub stderr: Vec<u8>,
}

impl CommandOutput {
    /// Standard output as text (invalid UTF-8 replaced).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Standard error as text (invalid UTF-8 replaced).
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// What one line from the guest meant to a [`FrameParser`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedLine {
    /// Part of the awaited frame.
    Frame,
    /// Part of an earlier command's frame, or a blank line: ignore quietly.
    Skipped,
    /// Not framed at all (e.g. an error of the guest shell itself): log it.
    Stray,
    /// The awaited frame is complete.
    Done(CommandOutput),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Waiting,
    Out,
    Err,
    /// Inside the frame of another id.
    Other,
}

/// Collects the frame of one command id from the guest's output lines.
#[derive(Debug)]
pub struct FrameParser {
    id: String,
    section: Section,
    out: String,
    err: String,
}

impl FrameParser {
    /// A parser waiting for the frame of `id`.
    pub fn new(id: &str) -> Self {
        FrameParser {
            id: id.to_owned(),
            section: Section::Waiting,
            out: String::new(),
            err: String::new(),
        }
    }

    /// Feeds one line (without its `\n`).
    pub fn push(&mut self, line: &[u8]) -> Result<ParsedLine> {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches('\r');
        if let Some(rest) = text.strip_prefix(MARKER).and_then(|r| r.strip_prefix(' ')) {
            let mut words = rest.split(' ');
            let kind = words.next().unwrap_or("");
            let id = words.next().unwrap_or("");
            if id != self.id {
                self.section = if kind == "end" {
                    Section::Waiting
                } else {
                    Section::Other
                };
                return Ok(ParsedLine::Skipped);
            }
            match kind {
                "out" => self.section = Section::Out,
                "err" => self.section = Section::Err,
                "end" => {
                    let status = words
                        .next()
                        .and_then(|s| s.parse::<i32>().ok())
                        .ok_or_else(|| anyhow!("bad end-of-frame line {text:?}"))?;
                    let stdout = decode(&self.out).context("decoding the command's stdout")?;
                    let stderr = decode(&self.err).context("decoding the command's stderr")?;
                    self.section = Section::Waiting;
                    return Ok(ParsedLine::Done(CommandOutput {
                        status,
                        stdout,
                        stderr,
                    }));
                }
                _ => bail!("unknown frame line {text:?}"),
            }
            return Ok(ParsedLine::Frame);
        }
        match self.section {
            Section::Out => self.out.push_str(text),
            Section::Err => self.err.push_str(text),
            Section::Other => return Ok(ParsedLine::Skipped),
            Section::Waiting if text.trim().is_empty() => return Ok(ParsedLine::Skipped),
            Section::Waiting => return Ok(ParsedLine::Stray),
        }
        Ok(ParsedLine::Frame)
    }
}

fn decode(b64: &str) -> Result<Vec<u8>> {
    let compact: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD
        .decode(compact)
        .context("invalid base64 in a frame")
}

/// The host end of the command channel: a connection to QEMU's chardev
/// socket, with a reader thread that splits the guest's output into lines.
#[derive(Debug)]
pub struct ShellChannel {
    stream: UnixStream,
    lines: Receiver<Vec<u8>>,
    counter: u64,
    salt: u32,
    ready: bool,
    log: Log,
}

impl ShellChannel {
    /// Connects to the channel's socket, retrying for up to `timeout` while
    /// QEMU creates it.
    pub fn connect(path: &Path, timeout: Duration, log: &Log) -> Result<Self> {
        let end = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= end => {
                    return Err(e).with_context(|| {
                        format!(
                            "connecting to the command channel socket {}",
                            path.display()
                        )
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let reader = stream
            .try_clone()
            .context("cloning the command channel socket")?;
        let (tx, lines) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("{}-shell-reader", log.prefix()))
            .spawn(move || {
                let mut reader = BufReader::new(reader);
                loop {
                    let mut line = Vec::new();
                    match reader.read_until(b'\n', &mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            if line.last() == Some(&b'\n') {
                                line.pop();
                            }
                            if tx.send(line).is_err() {
                                break;
                            }
                        }
                    }
                }
            })
            .context("starting the command channel reader thread")?;
        let salt = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
            .unwrap_or(0)
            ^ std::process::id();
        Ok(ShellChannel {
            stream,
            lines,
            counter: 0,
            salt,
            ready: false,
            log: log.clone(),
        })
    }

    /// Whether the guest has answered at least once.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    fn next_id(&mut self) -> String {
        self.counter += 1;
        format!("{:08x}-{}", self.salt, self.counter)
    }

    /// Waits until the guest shell answers, for up to `timeout`. Probes are
    /// re-sent every few seconds (bytes sent before the guest opened its end
    /// may be dropped); answers to older probes are skipped. `check` runs
    /// before each probe; its error (QEMU died, say) ends the wait at once.
    pub fn wait_ready(
        &mut self,
        timeout: Duration,
        check: &mut dyn FnMut() -> Result<()>,
    ) -> Result<Duration> {
        let start = Instant::now();
        let end = start + timeout;
        while !self.ready {
            let now = Instant::now();
            if now >= end {
                bail!(
                    "the guest command channel did not answer within {}",
                    secs(timeout)
                );
            }
            check()?;
            let round = (end - now).min(Duration::from_secs(3));
            match self.exchange("true", Duration::from_secs(5), round, &mut || Ok(())) {
                Ok(_) => self.ready = true,
                Err(e) if e.downcast_ref::<NoReply>().is_some() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(start.elapsed())
    }

    /// Runs `command` in the guest with a guest-side `timeout` and a
    /// host-side deadline of `timeout` + [`HOST_GRACE`].
    pub fn run(&mut self, command: &str, timeout: Duration) -> Result<CommandOutput> {
        self.exchange(command, timeout, timeout + HOST_GRACE, &mut || Ok(()))
    }

    /// [`ShellChannel::run`], calling `check` every [`CHECK_EVERY`] while
    /// no reply has come: its error ends the wait at once (a guest whose
    /// kernel died mid-command would otherwise cost the whole timeout).
    pub fn run_watched(
        &mut self,
        command: &str,
        timeout: Duration,
        check: &mut dyn FnMut() -> Result<()>,
    ) -> Result<CommandOutput> {
        self.exchange(command, timeout, timeout + HOST_GRACE, check)
    }

    fn exchange(
        &mut self,
        command: &str,
        guest_timeout: Duration,
        wait: Duration,
        check: &mut dyn FnMut() -> Result<()>,
    ) -> Result<CommandOutput> {
        let id = self.next_id();
        let line = wrap_command(&id, command, guest_timeout);
        self.stream
            .write_all(line.as_bytes())
            .context("writing to the command channel (QEMU exited?)")?;
        let mut parser = FrameParser::new(&id);
        let end = Instant::now() + wait;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let line = match self.lines.recv_timeout(left.min(CHECK_EVERY)) {
                Ok(line) => line,
                Err(RecvTimeoutError::Timeout) if left > CHECK_EVERY => {
                    check()?;
                    continue;
                }
                Err(RecvTimeoutError::Timeout) => return Err(NoReply(wait).into()),
                Err(RecvTimeoutError::Disconnected) => {
                    bail!("the command channel closed (QEMU exited?)")
                }
            };
            match parser.push(&line)? {
                ParsedLine::Done(out) => {
                    self.ready = true;
                    return Ok(out);
                }
                ParsedLine::Stray => self.log.info(format_args!(
                    "guest shell (unframed): {}",
                    String::from_utf8_lossy(&line)
                )),
                ParsedLine::Frame | ParsedLine::Skipped => {}
            }
        }
    }
}

/// How often [`ShellChannel::run_watched`] calls its check while it waits.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);

/// No frame arrived in time.
#[derive(Debug)]
pub struct NoReply(pub Duration);

impl std::fmt::Display for NoReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no answer from the guest within {}", secs(self.0))
    }
}

impl std::error::Error for NoReply {}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(parser: &mut FrameParser, text: &str) -> Vec<ParsedLine> {
        text.split('\n')
            .map(|l| parser.push(l.as_bytes()).unwrap())
            .collect()
    }

    fn frame(id: &str, out: &[u8], err: &[u8], status: i32) -> String {
        let b64 = |b: &[u8]| {
            let s = STANDARD.encode(b);
            // Like `base64 -w 76`.
            s.as_bytes()
                .chunks(76)
                .map(|c| format!("{}\n", String::from_utf8_lossy(c)))
                .collect::<String>()
        };
        format!(
            "\n{MARKER} out {id}\n{}{MARKER} err {id}\n{}{MARKER} end {id} {status}",
            b64(out),
            b64(err)
        )
    }

    fn check(input: &str, id: &str, expected: Option<CommandOutput>) {
        let mut parser = FrameParser::new(id);
        let done: Vec<CommandOutput> = feed(&mut parser, input)
            .into_iter()
            .filter_map(|p| match p {
                ParsedLine::Done(o) => Some(o),
                _ => None,
            })
            .collect();
        assert_eq!(done.into_iter().next(), expected);
    }

    #[test]
    fn frames_round_trip_any_bytes() {
        let out: Vec<u8> = (0..=255u8)
            .chain(*b"\n\n@@vmtest@@ end x 0\nno newline")
            .collect();
        let long = vec![b'y'; 1000];
        check(
            &frame("a-1", &out, &long, 3),
            "a-1",
            Some(CommandOutput {
                status: 3,
                stdout: out.clone(),
                stderr: long,
            }),
        );
        check(
            &frame("a-2", b"", b"", 0),
            "a-2",
            Some(CommandOutput::default()),
        );
    }

    #[test]
    fn earlier_frames_and_stray_lines_are_skipped() {
        let input = format!(
            "bash: some error\n{}\n{}",
            frame("a-1", b"old", b"", 1),
            frame("a-2", b"new", b"", 0)
        );
        check(
            &input,
            "a-2",
            Some(CommandOutput {
                status: 0,
                stdout: b"new".to_vec(),
                stderr: vec![],
            }),
        );
        let mut parser = FrameParser::new("a-2");
        let kinds = feed(
            &mut parser,
            &format!("bash: some error\n{}", frame("a-1", b"old", b"", 1)),
        );
        assert_eq!(kinds[0], ParsedLine::Stray);
        assert!(
            kinds[1..].iter().all(|k| *k == ParsedLine::Skipped),
            "{kinds:?}"
        );
    }

    #[test]
    fn incomplete_or_corrupt_frames() {
        check(&format!("{MARKER} out a-1\nAAAA"), "a-1", None);
        let mut parser = FrameParser::new("a-1");
        let _ = feed(&mut parser, &format!("{MARKER} out a-1\n!!!!"));
        assert!(
            parser
                .push(format!("{MARKER} end a-1 0").as_bytes())
                .is_err()
        );
        let mut parser = FrameParser::new("a-1");
        assert!(
            parser
                .push(format!("{MARKER} end a-1 zero").as_bytes())
                .is_err()
        );
    }

    #[test]
    fn wrapped_command_carries_the_script_verbatim() {
        let cmd = "printf 'a\\nb' && echo \"$HOME\" | tr a b # '\"";
        let text = wrap_command("abc-7", cmd, Duration::from_millis(1500));
        let (first, heredoc) = text.split_once('\n').unwrap();
        assert!(first.contains("timeout -k 5 2 bash --noprofile --norc -euo pipefail /dev/fd/3 3<<'@@vmtest@@abc-7' </dev/null"));
        assert!(first.contains("'/run/vmtest-shell/out'"));
        assert!(first.contains("@@vmtest@@ end %s %d"));
        assert_eq!(heredoc, format!("{cmd}\n@@vmtest@@abc-7\n"));

        // A script containing the delimiter line travels base64-encoded.
        let sneaky = "echo 1\n@@vmtest@@abc-8\necho 2";
        let text = wrap_command("abc-8", sneaky, Duration::from_secs(5));
        assert_eq!(text.matches('\n').count(), 1);
        assert!(text.contains(&STANDARD.encode(sneaky)));
    }

    /// Runs wrapped commands through the host's bash, as the guest shell
    /// would, and parses what comes back.
    fn run_locally(commands: &[(&str, &str, Duration)]) -> Vec<CommandOutput> {
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        let input: String = commands
            .iter()
            .map(|(id, cmd, t)| wrap_command_in(root, id, cmd, *t))
            .collect();
        let mut child = Command::new("bash")
            .args(["--noprofile", "--norc"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let lines: Vec<&[u8]> = out.stdout.split(|&b| b == b'\n').collect();
        let outputs = commands
            .iter()
            .map(|(id, _, _)| {
                let mut parser = FrameParser::new(id);
                lines
                    .iter()
                    .find_map(|l| match parser.push(l).unwrap() {
                        ParsedLine::Done(o) => Some(o),
                        _ => None,
                    })
                    .unwrap_or_else(|| panic!("no frame for {id}"))
            })
            .collect();
        for f in ["out", "err"] {
            let left = std::fs::read(dir.path().join(f)).unwrap();
            assert!(left.is_empty(), "output left behind in {f}");
        }
        outputs
    }

    #[test]
    fn protocol_round_trip_through_a_real_bash() {
        let t = Duration::from_secs(10);
        let got = run_locally(&[
            (
                "p-1",
                "printf 'a\\000b\\377\\n\\n@@vmtest@@ end p-1 0\\nend'",
                t,
            ),
            ("p-2", "echo out; echo err >&2; exit 3", t),
            ("p-3", "false; echo not reached", t),
            ("p-4", "false | true; echo \"$0\"", t),
            ("p-5", "unset_var_is_an_error=$nope", t),
            ("p-6", "read -r line || echo \"stdin is empty\"", t),
            ("p-7", "sleep 30", Duration::from_secs(1)),
            ("p-8", "echo \"it's\" \\$HOME 'quoted'", t),
            ("p-9", "echo 1\n@@vmtest@@p-9\necho 2", t),
            (
                "p-10",
                "cat <<'EOF'\nheredoc $HOME\nEOF\nprintf 'no newline at the end'",
                t,
            ),
        ]);
        assert_eq!(got[0].stdout, b"a\0b\xff\n\n@@vmtest@@ end p-1 0\nend");
        assert_eq!(
            (got[1].status, &got[1].stdout[..], &got[1].stderr[..]),
            (3, &b"out\n"[..], &b"err\n"[..])
        );
        assert_eq!((got[2].status, &got[2].stdout[..]), (1, &b""[..]));
        assert_eq!(
            (got[3].status, got[3].stdout_text().as_str()),
            (1, ""),
            "pipefail"
        );
        assert_ne!(got[4].status, 0, "set -u");
        assert_eq!(got[5].stdout_text(), "stdin is empty\n");
        assert_eq!(got[6].status, 124, "guest-side timeout");
        assert_eq!(got[7].stdout_text(), "it's $HOME quoted\n");
        assert_eq!(
            got[8].stdout_text(),
            "1\n",
            "the delimiter line is a (failing) command"
        );
        assert_eq!(got[9].stdout_text(), "heredoc $HOME\nno newline at the end");
    }

    #[test]
    fn a_failing_check_ends_the_wait_for_a_reply() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shell.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let mut channel =
            ShellChannel::connect(&path, Duration::from_secs(5), &Log::new("test")).unwrap();
        // The guest end accepts and never answers.
        let (_guest, _) = listener.accept().unwrap();
        let start = Instant::now();
        let mut calls = 0;
        let mut check = || {
            calls += 1;
            if calls == 2 {
                bail!("the kernel faulted")
            }
            Ok(())
        };
        let err = channel
            .run_watched("sleep 1", Duration::from_secs(120), &mut check)
            .unwrap_err();
        assert_eq!(err.to_string(), "the kernel faulted");
        assert!(start.elapsed() < CHECK_EVERY * 3, "{:?}", start.elapsed());
        assert_eq!(calls, 2);
    }

    #[test]
    fn unit_and_dropin() {
        let unit = unit_text();
        assert!(unit.contains("BindsTo=dev-virtio\\x2dports-org.openclaw.vmtest.shell.device\n"));
        assert!(unit.contains("exec 3<>/dev/virtio-ports/org.openclaw.vmtest.shell"));
        assert!(unit.contains("DefaultDependencies=no\n"));
        assert!(!unit.contains('$'), "systemd would expand it");
        assert!(!unit.contains('%'), "systemd would expand it");
        assert_eq!(
            dropin_text().lines().last(),
            Some("Wants=vmtest-shell.service")
        );
        let names: Vec<String> = credentials()
            .unwrap()
            .iter()
            .map(|c| c.name().to_owned())
            .collect();
        assert_eq!(
            names,
            [
                "systemd.extra-unit.vmtest-shell.service",
                "systemd.unit-dropin.sysinit.target"
            ]
        );
    }
}
