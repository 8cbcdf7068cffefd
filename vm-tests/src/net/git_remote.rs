//! The workspace git remote of INF-2: a per-run ed25519 deploy key made on
//! the host, a bare repository in a temporary directory, and a real `sshd`
//! in the peer's namespace that serves it to that key only.
//!
//! The guest's user-data names the remote as `<user>@10.77.0.99:<path>`
//! (`user` is whoever runs the suite, root for the test network). The
//! `authorized_keys` line holds the deploy key alone, with `restrict` and a
//! forced `git-shell`, so the key opens nothing but git on this repository's
//! host. The daemon listens on the peer's address only, inside its
//! namespace: the host's own network never sees it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use super::{PEER_IP, TestNet, run_command};

/// The branch the appliance's sync job pushes to.
pub const BRANCH: &str = "main";

/// An ed25519 key pair made by `ssh-keygen` for one run.
#[derive(Clone)]
pub struct DeployKey {
    /// The OpenSSH private key (PEM-like text, LF line ends).
    pub private: String,
    /// The public key line (`ssh-ed25519 AAAA…`).
    pub public: String,
}

impl std::fmt::Debug for DeployKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeployKey(<redacted>)")
    }
}

impl DeployKey {
    /// A fresh key, unencrypted, without comment (the passphrase on argv
    /// is the empty one; the key itself only passes through a file that
    /// is deleted with its temporary directory).
    pub fn generate() -> Result<DeployKey> {
        let dir = tempfile::tempdir().context("creating a temporary directory for ssh-keygen")?;
        let path = dir.path().join("key");
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "", "-f"])
            .arg(&path)
            .stdin(Stdio::null())
            .output()
            .context("running ssh-keygen (package openssh-client)")?;
        if !out.status.success() {
            bail!(
                "ssh-keygen -t ed25519 failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let private = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let public_path = path.with_extension("pub");
        let public = std::fs::read_to_string(&public_path)
            .with_context(|| format!("reading {}", public_path.display()))?
            .trim()
            .to_string();
        Ok(DeployKey { private, public })
    }

    /// What SEC-3 searches the disk for: the fourth base64 line of the
    /// private key, which holds the 32-byte private seed of an ed25519
    /// key (bytes 161–192 of the key blob; that line spans 157–209). The
    /// first lines are the same in every key (format header, public key),
    /// so they would prove nothing; a copy of the whole key contains it.
    pub fn needle(&self) -> &str {
        self.private
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .nth(3)
            .unwrap_or(&self.private)
    }
}

/// The bare repository and the daemon's files, in a temporary directory
/// (removed on drop).
pub struct GitRemote {
    dir: TempDir,
    /// `sshd`, by its absolute path (sshd re-executes itself by it).
    sshd: PathBuf,
    user: String,
    /// The daemon's public host key (`ssh-ed25519 AAAA… vmtest-peer`).
    host_key: String,
}

impl GitRemote {
    /// Makes the bare repository, a host key and an `authorized_keys`
    /// that admits `key` only, for git only.
    pub fn create(key: &DeployKey) -> Result<GitRemote> {
        let sshd = hostutil::which("sshd", hostutil::SBIN_DIRS).context(
            "`sshd` not found on PATH or in /usr/sbin: install openssh-server (nixpkgs: openssh) \
             for INF-2's git remote",
        )?;
        let dir = tempfile::Builder::new()
            .prefix("vmtest-ws-")
            .tempdir()
            .context("creating the git remote's directory")?;
        let mut remote = GitRemote {
            user: run_command(Command::new("id").arg("-un"))?
                .trim()
                .to_string(),
            dir,
            sshd,
            host_key: String::new(),
        };
        run_command(
            Command::new("git")
                .args(["init", "-q", "--bare", "-b", BRANCH])
                .arg(remote.bare()),
        )?;
        run_command(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "vmtest-peer", "-f"])
                .arg(remote.dir.path().join("host_ed25519")),
        )?;
        let host_pub = remote.dir.path().join("host_ed25519.pub");
        remote.host_key = std::fs::read_to_string(&host_pub)
            .with_context(|| format!("reading {}", host_pub.display()))?
            .trim()
            .to_string();
        let authorized_keys = remote.dir.path().join("authorized_keys");
        std::fs::write(
            &authorized_keys,
            format!(
                "restrict,command=\"git-shell -c \\\"$SSH_ORIGINAL_COMMAND\\\"\" {}\n",
                key.public
            ),
        )
        .with_context(|| format!("writing {}", authorized_keys.display()))?;
        let config = remote.dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress {PEER_IP}\nPort 22\nHostKey {host_key}\nAuthorizedKeysFile {authorized_keys}\n\
                 PidFile none\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                 PermitRootLogin prohibit-password\nAllowUsers {user}\nLoginGraceTime 60\n\
                 LogLevel VERBOSE\n",
                host_key = remote.dir.path().join("host_ed25519").display(),
                authorized_keys = authorized_keys.display(),
                user = remote.user,
            ),
        )
        .with_context(|| format!("writing {}", config.display()))?;
        Ok(remote)
    }

    /// The bare repository on the host.
    pub fn bare(&self) -> PathBuf {
        self.dir.path().join("workspace.git")
    }

    /// The daemon's host key as `workspace-repo-host-key` pins it: a
    /// known_hosts line for the peer's address (ESC-2: no trust on first use).
    pub fn host_key_line(&self) -> String {
        format!("{PEER_IP} {}", self.host_key)
    }

    /// The remote as the guest's user-data names it (scp-like form).
    pub fn url(&self) -> String {
        format!("{}@{PEER_IP}:{}", self.user, self.bare().display())
    }

    /// Starts `sshd` in the peer's namespace; it stops when the returned
    /// guard is dropped.
    pub fn serve(&self, net: &TestNet) -> Result<PeerSshd> {
        // Privilege separation directory that Debian's sshd insists on.
        std::fs::create_dir_all("/run/sshd").context("creating /run/sshd")?;
        let log = self.dir.path().join("sshd.log");
        let stderr =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new("ip")
            .args(["netns", "exec", net.peer_netns()])
            .arg(&self.sshd)
            .args(["-D", "-e", "-f"])
            .arg(self.dir.path().join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {} in the peer's namespace", self.sshd.display()))?;
        let mut sshd = PeerSshd { child, log };
        let started = Instant::now();
        while !sshd.log_text().contains("Server listening on") {
            if let Ok(Some(status)) = sshd.child.try_wait() {
                bail!("sshd exited ({status}): {}", sshd.log_text());
            }
            if started.elapsed() > Duration::from_secs(15) {
                bail!("sshd did not listen within 15 s: {}", sshd.log_text());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(sshd)
    }

    /// `git <args>` on the bare repository; its stdout, or an error with stderr.
    pub fn git(&self, args: &[&str]) -> Result<String> {
        Ok(run_command(
            Command::new("git")
                .arg("--git-dir")
                .arg(self.bare())
                .args(args),
        )?
        .trim()
        .to_string())
    }
}

/// The running daemon; killed when dropped.
pub struct PeerSshd {
    child: Child,
    log: PathBuf,
}

impl PeerSshd {
    /// What sshd logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for PeerSshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needle_is_the_private_seed_line_and_differs_per_key() {
        let a = DeployKey::generate().unwrap();
        let b = DeployKey::generate().unwrap();
        assert!(
            a.private
                .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n")
        );
        assert!(a.public.starts_with("ssh-ed25519 "));
        assert_eq!(a.needle().len(), 70, "{}", a.needle());
        assert!(a.private.contains(a.needle()));
        assert_ne!(a.needle(), b.needle());
        // The line starts in the private field's length (64 = 0x00000040).
        assert!(a.needle().starts_with("AAAE"), "{}", a.needle());
        assert!(!format!("{a:?}").contains(a.needle()));
    }

    #[test]
    fn remote_admits_the_key_for_git_only() {
        let key = DeployKey::generate().unwrap();
        let remote = GitRemote::create(&key).unwrap();
        let keys = std::fs::read_to_string(remote.dir.path().join("authorized_keys")).unwrap();
        assert_eq!(keys.lines().count(), 1);
        assert!(keys.starts_with("restrict,command=\"git-shell -c "));
        assert!(keys.trim_end().ends_with(&key.public));
        assert!(remote.url().ends_with("/workspace.git"));
        assert!(remote.url().contains(&format!("@{PEER_IP}:/")));
        assert_eq!(
            remote.git(&["rev-parse", "--is-bare-repository"]).unwrap(),
            "true"
        );
    }
}
