//! The rescue system over the system `ssh`: a temporary ED25519 key made
//! by `ssh-keygen` in a temporary directory, and `ssh` started with argv
//! arrays (never a local shell).
//!
//! Host keys: the rescue system makes a new host key at every boot and the
//! API does not publish it, so there is nothing to check it against. `ssh`
//! runs with `StrictHostKeyChecking=no` and a `UserKnownHostsFile` inside the
//! temporary directory: the user's `known_hosts` is neither read nor
//! polluted. What keeps others out is that the rescue system accepts only
//! the run's fresh key; the sha256 computed on the server proves what is on
//! the disk, not who computed it (see docs/hetzner.md).

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::Interrupt;

/// An SSH failure, naming the command and the tail of its stderr.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// A tool could not be started.
    #[error("cannot run `{tool}`: {source} (install openssh-client)")]
    Spawn {
        /// `ssh` or `ssh-keygen`.
        tool: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// A command failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// What was run (no secrets: the key is a file path).
        command: String,
        /// Its exit status.
        status: String,
        /// The end of its stderr.
        stderr: String,
    },
    /// SSH never came up.
    #[error("no SSH on {host}:{port} after {attempts} attempts ({secs} s): {last}")]
    Unreachable {
        /// The address.
        host: String,
        /// The port.
        port: u16,
        /// How many tries.
        attempts: u32,
        /// How long.
        secs: u64,
        /// The last attempt's error.
        last: String,
    },
    /// Ctrl-C.
    #[error("interrupted")]
    Interrupted,
    /// Local I/O (the temporary directory, reading a key).
    #[error("{what}: {source}")]
    Io {
        /// What was done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SshError {
    let what = what.into();
    move |source| SshError::Io { what, source }
}

/// The last lines of a process's stderr, for error messages.
pub(crate) fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(8);
    lines[start..].join(" | ")
}

/// Run `cmd` to completion with no stdin; a spawn failure names `tool`.
fn output(tool: &'static str, cmd: &mut Command) -> Result<Output, SshError> {
    cmd.stdin(Stdio::null())
        .output()
        .map_err(|source| SshError::Spawn { tool, source })
}

fn check(command: String, out: Output) -> Result<Output, SshError> {
    if out.status.success() {
        Ok(out)
    } else {
        Err(SshError::Failed {
            command,
            status: out.status.to_string(),
            stderr: tail(&out.stderr),
        })
    }
}

/// A temporary ED25519 key pair; deleted with its directory on drop.
pub struct TempKey {
    dir: tempfile::TempDir,
    public: String,
}

impl TempKey {
    /// `ssh-keygen -t ed25519 -N ''` into a new temporary directory.
    pub fn generate(comment: &str) -> Result<TempKey, SshError> {
        let dir = tempfile::Builder::new()
            .prefix("openclaw-upload-")
            .tempdir()
            .map_err(io("creating a temporary directory for the SSH key"))?;
        let key = dir.path().join("id_ed25519");
        let out = output(
            "ssh-keygen",
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
                .arg(&key),
        )?;
        check(format!("ssh-keygen -t ed25519 -f {}", key.display()), out)?;
        let pub_path = dir.path().join("id_ed25519.pub");
        let public = std::fs::read_to_string(&pub_path)
            .map_err(io(format!("reading {}", pub_path.display())))?
            .trim()
            .to_string();
        Ok(TempKey { dir, public })
    }

    /// The public key line (`ssh-ed25519 AAAA… comment`).
    pub fn public(&self) -> &str {
        &self.public
    }

    /// The private key file.
    pub fn private_path(&self) -> PathBuf {
        self.dir.path().join("id_ed25519")
    }

    fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }
}

/// Where the rescue system listens and how to log in.
pub struct Target<'k> {
    /// Address (the server's public IPv4).
    pub host: String,
    /// Port (22).
    pub port: u16,
    /// User (`root` in the rescue system).
    pub user: String,
    /// The key registered for rescue.
    pub key: &'k TempKey,
}

impl Target<'_> {
    /// `ssh` with every option set, ready for a remote command.
    fn command(&self, connect_timeout: Duration) -> Command {
        let mut c = Command::new("ssh");
        c.arg("-F").arg("/dev/null");
        c.arg("-i").arg(self.key.private_path());
        c.arg("-p").arg(self.port.to_string());
        for opt in [
            "BatchMode=yes".to_string(),
            "IdentitiesOnly=yes".to_string(),
            "StrictHostKeyChecking=no".to_string(),
            format!("UserKnownHostsFile={}", self.key.known_hosts().display()),
            "LogLevel=ERROR".to_string(),
            format!("ConnectTimeout={}", connect_timeout.as_secs().max(1)),
            "ServerAliveInterval=15".to_string(),
            "ServerAliveCountMax=4".to_string(),
        ] {
            c.arg("-o").arg(opt);
        }
        c.arg(format!("{}@{}", self.user, self.host));
        c.arg("--");
        c
    }

    fn describe(&self, remote: &str) -> String {
        format!("ssh -p {} {}@{} {remote}", self.port, self.user, self.host)
    }

    /// Run `remote` (a command line for the remote shell); its stdout.
    pub fn run(&self, remote: &str) -> Result<String, SshError> {
        let out = output("ssh", self.command(Duration::from_secs(20)).arg(remote))?;
        let out = check(self.describe(remote), out)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Try `true` until it works: `attempts` tries, `interval` apart.
    pub fn wait_until_up(
        &self,
        attempts: u32,
        interval: Duration,
        interrupt: &Interrupt,
    ) -> Result<(), SshError> {
        let started = Instant::now();
        let mut last = String::new();
        for attempt in 1..=attempts.max(1) {
            if interrupt.is_set() {
                return Err(SshError::Interrupted);
            }
            let timeout = interval.max(Duration::from_secs(5));
            let out = output("ssh", self.command(timeout).arg("true"))?;
            if out.status.success() {
                return Ok(());
            }
            last = tail(&out.stderr);
            if attempt < attempts {
                std::thread::sleep(interval);
            }
        }
        Err(SshError::Unreachable {
            host: self.host.clone(),
            port: self.port,
            attempts,
            secs: started.elapsed().as_secs(),
            last,
        })
    }

    /// Start `remote` with a pipe on its stdin (the image stream); stderr is
    /// collected by a thread so the pipe never fills.
    pub fn spawn_with_stdin(&self, remote: &str) -> Result<Streaming, SshError> {
        let mut child = self
            .command(Duration::from_secs(20))
            .arg(remote)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| SshError::Spawn {
                tool: "ssh",
                source,
            })?;
        let collect = |r: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut r) = r {
                    let _ = r.read_to_end(&mut buf);
                }
                buf
            })
        };
        let stdout = collect(
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        );
        let stderr = collect(
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        );
        Ok(Streaming {
            child,
            stdout,
            stderr,
            command: self.describe(remote),
        })
    }
}

/// A running `ssh` fed through its stdin.
pub struct Streaming {
    /// The `ssh` process (take its stdin to write).
    pub child: Child,
    stdout: std::thread::JoinHandle<Vec<u8>>,
    stderr: std::thread::JoinHandle<Vec<u8>>,
    command: String,
}

impl Streaming {
    /// Wait for it (stdin must be closed first); its stdout and stderr on
    /// success.
    pub fn finish(mut self) -> Result<(String, String), SshError> {
        let status = self
            .child
            .wait()
            .map_err(io(format!("waiting for {}", self.command)))?;
        let stdout = self.stdout.join().unwrap_or_default();
        let stderr = self.stderr.join().unwrap_or_default();
        check(
            self.command,
            Output {
                status,
                stdout,
                stderr,
            },
        )
        .map(|o| {
            (
                String::from_utf8_lossy(&o.stdout).into_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        })
    }

    /// Stop it (Ctrl-C, a local error) and reap it.
    pub fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        tail(&self.stderr.join().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_tail_keeps_the_last_lines() {
        let s: String = (0..20).map(|i| format!("line{i}\n")).collect();
        let t = tail(s.as_bytes());
        assert!(t.starts_with("line12") && t.ends_with("line19"), "{t}");
    }
}
