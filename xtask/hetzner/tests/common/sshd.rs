//! A real `sshd` on a random loopback port, standing in for the rescue
//! system: its own config, host key and authorized_keys in a temporary
//! directory (the mock API fills authorized_keys at `enable_rescue`).
//!
//! Its sessions get a `PATH` starting with fakes of what tells a rescue
//! system from a normal one and of what can go wrong in the write:
//! `hostname` and `findmnt` say `rescue` and a RAM root while
//! [`Sshd::rescue_flag`] exists (the mock makes it at `poweron` after
//! `enable_rescue`), else a normal Debian on `/dev/sda1`; `blkdiscard`
//! fails unless [`Sshd::discard_ok`] exists, and then does nothing (the
//! old bytes stay, as BLKDISCARD allows); `zstd` passes only its first MiB
//! once (or, if it says `always`, every time) when [`Sshd::short_write`]
//! exists.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hostutil::{SBIN_DIRS, which};

/// The running daemon; killed when dropped.
pub struct Sshd {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The user to log in as (the one running the tests).
    pub user: String,
    /// The keys it accepts (written by the mock at `enable_rescue`).
    pub authorized_keys: PathBuf,
    /// Its log.
    pub log: PathBuf,
    /// Exists while the "server" runs the rescue system.
    pub rescue_flag: PathBuf,
    /// Exists: `blkdiscard` succeeds without discarding anything.
    pub discard_ok: PathBuf,
    /// Exists: the next `zstd` passes only its first MiB (then the file is
    /// removed, unless it says `always`).
    pub short_write: PathBuf,
    _dir: tempfile::TempDir,
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Sshd {
    /// Start it, or fail saying how to install it: these tests never pass
    /// silently without a real SSH daemon.
    pub fn start() -> Sshd {
        // sshd must be started by its absolute path; Debian puts it in
        // /usr/sbin, outside a user's PATH.
        let sshd_bin = which("sshd", SBIN_DIRS).unwrap_or_else(|| {
            panic!(
                "`sshd` not found on PATH or in /usr/sbin: the upload tests need a real SSH daemon on \
                 loopback as the rescue system; install it with `apt-get install openssh-server` \
                 (.ci/run does; nixpkgs: openssh)"
            )
        });
        let dir = tempfile::tempdir().expect("temporary directory");
        let host_key = dir.path().join("host_ed25519");
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&host_key));
        let authorized_keys = dir.path().join("authorized_keys");
        std::fs::write(&authorized_keys, "").expect("authorized_keys");
        let user = run(Command::new("id").arg("-un"));
        if run(Command::new("id").arg("-u")) == "0" {
            // Privilege separation directory that Debian's sshd insists on.
            std::fs::create_dir_all("/run/sshd").expect("creating /run/sshd");
        }
        let (rescue_flag, discard_ok, short_write) = (
            dir.path().join("rescue"),
            dir.path().join("discard-ok"),
            dir.path().join("short-write"),
        );
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("bin directory");
        let real_zstd = which("zstd", &[])
            .expect("zstd on PATH: the upload tests need it (apt-get install zstd)")
            .display()
            .to_string();
        let fakes = [
            (
                "hostname",
                format!(
                    "if [ -e '{}' ]; then echo rescue; else echo openclaw-upload-normal; fi",
                    rescue_flag.display()
                ),
            ),
            (
                "findmnt",
                format!(
                    "if [ -e '{}' ]; then printf 'tmpfs / tmpfs\\nproc /proc proc\\n'; \
                     else printf '/dev/sda1 / ext4\\n/dev/sda15 /boot/efi vfat\\n'; fi",
                    rescue_flag.display()
                ),
            ),
            (
                "blkdiscard",
                format!(
                    "[ -e '{}' ] && exit 0\necho \"blkdiscard: $1: BLKDISCARD ioctl failed: Operation not supported\" >&2\nexit 1",
                    discard_ok.display()
                ),
            ),
            (
                "zstd",
                format!(
                    "if [ -e '{f}' ]; then grep -q always '{f}' || rm -f '{f}'; {real_zstd} \"$@\" | {{ head -c 1048576; cat >/dev/null; }}; \
                     else exec {real_zstd} \"$@\"; fi",
                    f = short_write.display()
                ),
            ),
        ];
        for (name, body) in fakes {
            let path = bin.join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("a fake tool");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .expect("chmod a fake tool");
        }
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPidFile none\n\
                 StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nAllowUsers {user}\n\
                 LoginGraceTime 20\nMaxStartups 50\nLogLevel INFO\n\
                 SetEnv PATH={}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n",
                host_key.display(),
                authorized_keys.display(),
                bin.display()
            ),
        )
        .expect("sshd_config");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = dir.path().join("sshd.log");
        let child = Command::new(&sshd_bin)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .args(["-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("sshd log"))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", sshd_bin.display()));
        let mut sshd = Sshd {
            child,
            port,
            user,
            authorized_keys,
            log,
            rescue_flag,
            discard_ok,
            short_write,
            _dir: dir,
        };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = sshd.child.try_wait() {
                panic!("sshd exited ({status}): {}", sshd.log_text());
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "sshd did not listen within 15 s: {}",
                sshd.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        sshd
    }

    /// What sshd logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
