//! A real `sshd` on a random loopback port, standing in for the rescue
//! system: its own config, host key and authorized_keys in a temporary
//! directory (the mock API fills authorized_keys at `enable_rescue`).

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";

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
        assert!(
            std::path::Path::new(SSHD).is_file(),
            "{SSHD} not found: the upload tests need a real SSH daemon on loopback as the rescue system; \
             install it with `apt-get install openssh-server` (.ci/run does)"
        );
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
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPidFile none\n\
                 StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nAllowUsers {user}\n\
                 LoginGraceTime 20\nMaxStartups 50\nLogLevel INFO\n",
                host_key.display(),
                authorized_keys.display()
            ),
        )
        .expect("sshd_config");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = dir.path().join("sshd.log");
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .args(["-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("sshd log"))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {SSHD}: {e}"));
        let mut sshd = Sshd {
            child,
            port,
            user,
            authorized_keys,
            log,
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
