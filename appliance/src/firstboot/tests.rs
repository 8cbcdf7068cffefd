//! The whole agent against a temp directory laid out like the image (the
//! real rendered appliance files), with a fake runner that imitates the
//! programs it calls, including what a reboot keeps and loses.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::Value;

use super::source::tests::{Reply, Server, fast};
use super::userdata::tests as ud;
use super::*;
use crate::Entry;

/// Collects log lines.
#[derive(Default)]
pub(crate) struct MemLog {
    lines: Mutex<Vec<(Level, String)>>,
}

impl MemLog {
    pub(crate) fn all(&self) -> String {
        self.lines
            .lock()
            .map(|l| {
                l.iter()
                    .map(|(lv, m)| format!("{lv:?}: {m}\n"))
                    .collect::<String>()
            })
            .unwrap_or_default()
    }

    pub(crate) fn count(&self, needle: &str) -> usize {
        self.lines
            .lock()
            .map(|l| l.iter().filter(|(_, m)| m.contains(needle)).count())
            .unwrap_or(0)
    }
}

impl Log for MemLog {
    fn line(&self, level: Level, msg: &str) {
        if let Ok(mut l) = self.lines.lock() {
            l.push((level, msg.to_string()));
        }
    }
}

#[derive(Default)]
struct FakeState {
    calls: Vec<Vec<String>>,
    iptables: BTreeSet<String>,
    grown: bool,
    ts_running: bool,
    ts_key_file_mode: Option<u32>,
    hostname: Option<String>,
    /// Make `tailscale up` fail (with the key in its stderr, to test scrubbing).
    ts_up_fails: bool,
    /// How many `tailscale status` calls say `Starting` before `Running`
    /// (a tailscaled with state from the state volume).
    ts_starting: u32,
}

/// Imitates every program the agent runs, on the fixture's root.
struct FakeRunner {
    root: PathBuf,
    tailscale_key: String,
    state: Mutex<FakeState>,
}

fn ok(stdout: &str) -> io::Result<CmdOutput> {
    Ok(CmdOutput {
        code: Some(0),
        stdout: stdout.into(),
        stderr: String::new(),
    })
}

fn exit(code: i32, stdout: &str, stderr: &str) -> io::Result<CmdOutput> {
    Ok(CmdOutput {
        code: Some(code),
        stdout: stdout.into(),
        stderr: stderr.into(),
    })
}

impl FakeRunner {
    fn new(root: &Path) -> Self {
        FakeRunner {
            root: root.to_path_buf(),
            tailscale_key: ud::TAILSCALE.into(),
            state: Mutex::new(FakeState::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn calls(&self) -> Vec<String> {
        self.state().calls.iter().map(|c| c.join(" ")).collect()
    }

    /// A reboot: /run and /proc are gone, netfilter rules too; at boot the
    /// image's fstab activates /swapfile and the boot-time unit (if
    /// enabled) closes the metadata service again. Disk and Tailscale
    /// state survive.
    fn reboot(&self) {
        let _ = fs::remove_dir_all(self.root.join("run"));
        let _ = fs::remove_dir_all(self.root.join("proc"));
        let mut st = self.state();
        st.iptables.clear();
        st.calls.clear();
        drop(st);
        let swap = self.root.join("swapfile");
        let fstab = fs::read_to_string(self.root.join("etc/fstab")).unwrap_or_default();
        if fstab.lines().any(|l| l.starts_with("/swapfile\t"))
            && super::steps::has_swap_signature(&swap)
        {
            self.swapon(&swap.to_string_lossy());
        }
        let link = self
            .root
            .join("etc/systemd/system/sysinit.target.wants")
            .join(METADATA_FIREWALL_UNIT);
        if fs::symlink_metadata(link).is_ok() {
            let _ = apply_metadata_firewall(self);
        }
        self.state().calls.clear();
    }

    fn swapon(&self, path: &str) {
        let swaps = self.root.join("proc/swaps");
        let _ = fs::create_dir_all(self.root.join("proc"));
        let mut text = fs::read_to_string(&swaps)
            .unwrap_or_else(|_| "Filename Type Size Used Priority\n".into());
        text.push_str(&format!("{path} file 1024 0 -2\n"));
        let _ = fs::write(swaps, text);
    }

    fn swaps_active(&self) -> bool {
        fs::read_to_string(self.root.join("proc/swaps"))
            .map(|t| t.contains("/swapfile "))
            .unwrap_or(false)
    }
}

impl Runner for FakeRunner {
    fn run(&self, program: &str, args: &[&str]) -> io::Result<CmdOutput> {
        let mut call = vec![program.to_string()];
        call.extend(args.iter().map(|a| a.to_string()));
        self.state().calls.push(call);
        for a in args {
            assert!(
                !a.contains(&self.tailscale_key) && !a.contains("sk-ant-oat01-FAKE"),
                "a secret on argv: {program} {args:?}"
            );
        }
        let name = program.rsplit('/').next().unwrap_or(program);
        // `timeout` around `tailscale status` and `set`: run the command
        // it bounds.
        if name == "timeout"
            && let [_, _, inner, rest @ ..] = args
            && matches!(rest.first(), Some(&"status" | &"set"))
        {
            return self.run(inner, rest);
        }
        match (name, args) {
            ("ssh-keygen", ["-A", "-f", root]) => {
                let dir = Path::new(root).join("etc/ssh");
                fs::create_dir_all(&dir)?;
                for kind in ["rsa", "ecdsa", "ed25519"] {
                    let key = dir.join(format!("ssh_host_{kind}_key"));
                    if !key.exists() {
                        fs::write(&key, format!("PRIVATE {kind}\n"))?;
                        fs::set_permissions(&key, fs::Permissions::from_mode(0o600))?;
                        let public = dir.join(format!("ssh_host_{kind}_key.pub"));
                        fs::write(&public, format!("PUBLIC {kind}\n"))?;
                        fs::set_permissions(&public, fs::Permissions::from_mode(0o644))?;
                    }
                }
                ok("")
            }
            ("findmnt", ["-n", "-o", "SOURCE", "/"]) => ok("/dev/vda3\n"),
            ("findmnt", ["-n", "-b", "-o", "SIZE", "/"]) => ok("419430400\n"),
            ("lsblk", ["-n", "-d", "-o", "PKNAME,PARTN", "/dev/vda3"]) => ok("vda      3\n"),
            ("growpart", ["/dev/vda", "3"]) => {
                let mut st = self.state();
                if st.grown {
                    exit(
                        1,
                        "NOCHANGE: partition 3 is size 83884032. it cannot be grown\n",
                        "",
                    )
                } else {
                    st.grown = true;
                    ok("CHANGED: partition=3 start=… old: size=8384479 new: size=83884032\n")
                }
            }
            ("resize2fs", ["/dev/vda3"]) => ok(""),
            ("fallocate", ["-l", size, path]) => {
                let f = fs::OpenOptions::new().write(true).open(path)?;
                f.set_len(size.parse().unwrap_or(0))?;
                ok("")
            }
            ("mkswap", [path]) => {
                let mut f = fs::OpenOptions::new().write(true).open(path)?;
                f.seek(SeekFrom::Start(4086))?;
                f.write_all(b"SWAPSPACE2")?;
                ok("Setting up swapspace version 1\n")
            }
            ("swapon", [path]) => {
                self.swapon(path);
                ok("")
            }
            ("hostname", [name]) => {
                self.state().hostname = Some(name.to_string());
                ok("")
            }
            ("networkctl", ["reload"]) => ok(""),
            ("tailscale", ["status", "--json"]) => {
                let mut st = self.state();
                let state = if st.ts_starting > 0 {
                    st.ts_starting -= 1;
                    if st.ts_starting == 0 {
                        st.ts_running = true;
                    }
                    "Starting"
                } else if st.ts_running {
                    "Running"
                } else {
                    "NeedsLogin"
                };
                ok(&format!("{{\"BackendState\": \"{state}\"}}"))
            }
            ("tailscale", ["up", key_arg, host, "--ssh", "--timeout=120s", server @ ..]) => {
                assert!(host.starts_with("--hostname="));
                assert!(
                    server.is_empty()
                        || server.len() == 1 && server[0].starts_with("--login-server=")
                );
                let path = key_arg
                    .strip_prefix("--auth-key=file:")
                    .expect("auth key by file");
                let meta = fs::metadata(path)?;
                assert_eq!(fs::read_to_string(path)?, self.tailscale_key);
                let mut st = self.state();
                st.ts_key_file_mode = Some(meta.mode() & 0o7777);
                if st.ts_up_fails {
                    return exit(
                        1,
                        "",
                        &format!(
                            "backend error: invalid key: {} not valid\n",
                            self.tailscale_key
                        ),
                    );
                }
                st.ts_running = true;
                ok("")
            }
            ("tailscale", ["set", op, host, "--ssh"]) => {
                assert_eq!(*op, "--operator=", "TS-2: no operator");
                assert!(host.starts_with("--hostname="));
                ok("")
            }
            (
                "timeout",
                [
                    "--kill-after=10s",
                    "90s",
                    "/usr/bin/tailscale",
                    "serve",
                    "--bg",
                    "--yes",
                    "--https=443",
                    target,
                ],
            ) => {
                assert!(self.state().ts_running, "Serve before login");
                assert!(target.starts_with("http://127.0.0.1:"));
                ok("")
            }
            (tool @ ("iptables" | "ip6tables"), ["-w", "-t", "raw", "-C", rest @ ..]) => {
                if self
                    .state()
                    .iptables
                    .contains(&format!("{tool} {}", rest.join(" ")))
                {
                    ok("")
                } else {
                    exit(
                        1,
                        "",
                        "iptables: Bad rule (does a matching rule exist in that chain?).\n",
                    )
                }
            }
            (tool @ ("iptables" | "ip6tables"), ["-w", "-t", "raw", "-A", chain, rest @ ..]) => {
                let mut rule = vec![tool, *chain];
                rule.extend(rest);
                self.state().iptables.insert(rule.join(" "));
                ok("")
            }
            _ => panic!("unexpected command: {program} {args:?}"),
        }
    }
}

fn spec() -> image_spec::Spec {
    image_spec::Spec::parse("image.toml", include_str!("../../../image.toml")).expect("image.toml")
}

/// Options of a fixture image.
#[derive(Clone, Copy)]
struct ImageOpts {
    tailscale: bool,
    /// The manifest's `tailscale.serve` (the spec's `gateway.tailscale-serve`).
    serve: bool,
    sshd: bool,
}

const FULL: ImageOpts = ImageOpts {
    tailscale: true,
    serve: true,
    sshd: true,
};

/// A root directory laid out like the image: the rendered appliance files
/// plus the few system files the agent reads.
fn fixture(opts: ImageOpts) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let spec = spec();
    let ctx = crate::files::Context {
        tailscale: opts.tailscale,
        root_fs_uuid: "11111111-2222-4333-8444-555555555555".into(),
        esp_volume_id: "ABCD-1234".into(),
        sandbox_image_id: format!("sha256:{}", "e".repeat(64)),
    };
    for (path, entry) in crate::files::render(&spec, &ctx).entries() {
        let p = root.join(path);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        match entry {
            Entry::Dir { mode, .. } => {
                fs::create_dir_all(&p).expect("mkdir");
                fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).expect("chmod");
            }
            Entry::File { mode, data, .. } => {
                fs::write(&p, data).expect("write");
                fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).expect("chmod");
            }
            Entry::Symlink { target } => {
                std::os::unix::fs::symlink(target, &p).expect("symlink");
            }
        }
    }
    let put = |rel: &str, data: &[u8], mode: u32| {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(&p, data).expect("write");
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
    };
    put(
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/bash\nopenclaw:x:1000:1000::/home/openclaw:/bin/bash\n",
        0o644,
    );
    put(
        "usr/share/openclaw-appliance/manifest.json",
        format!(
            "{{\"tailscale\": {{\"present\": {}, \"serve\": {}}}}}\n",
            opts.tailscale, opts.serve
        )
        .as_bytes(),
        0o644,
    );
    put("usr/bin/growpart", b"", 0o755);
    put("dev/urandom", &(0u8..64).collect::<Vec<u8>>(), 0o644);
    if opts.tailscale {
        put("usr/bin/tailscale", b"", 0o755);
    }
    if opts.sshd {
        put("usr/sbin/sshd", b"", 0o755);
        fs::create_dir_all(root.join("etc/ssh")).expect("mkdir");
    }
    dir
}

/// Credentials as the unit would see them.
fn credentials(userdata: &str, metadata: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join(CREDENTIAL_USERDATA), userdata).expect("write");
    if let Some(m) = metadata {
        fs::write(dir.path().join(CREDENTIAL_METADATA), m).expect("write");
    }
    dir
}

fn agent<'a>(
    root: &Path,
    creds: Option<&Path>,
    runner: &'a FakeRunner,
    log: &'a MemLog,
) -> Agent<'a> {
    Agent {
        layout: Layout {
            root: root.to_path_buf(),
            user: "openclaw".into(),
            set_owner: false,
            urandom: root.join("dev/urandom"),
        },
        credentials_dir: creds.map(Path::to_path_buf),
        metadata_url: Some("http://127.0.0.1:9/never-asked".into()),
        fetch: fast(),
        runner,
        log,
    }
}

/// Every entry under `root` except the volatile /run and /proc: kind,
/// mode and content (big files by size and first page only).
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).expect("readdir").flatten() {
            let p = e.path();
            let rel = p
                .strip_prefix(root)
                .expect("prefix")
                .to_string_lossy()
                .into_owned();
            if rel == "run" || rel == "proc" {
                continue;
            }
            let meta = fs::symlink_metadata(&p).expect("stat");
            let mode = meta.mode() & 0o7777;
            let v = if meta.file_type().is_symlink() {
                format!("-> {}", fs::read_link(&p).expect("readlink").display())
            } else if meta.is_dir() {
                stack.push(p);
                format!("dir {mode:o}")
            } else if meta.len() > 1 << 20 {
                let mut page = [0u8; 4096];
                let mut f = fs::File::open(&p).expect("open");
                io::Read::read_exact(&mut f, &mut page).expect("read");
                format!(
                    "file {mode:o} {} bytes, first page {:?}",
                    meta.len(),
                    &page[4086..]
                )
            } else {
                format!(
                    "file {mode:o} {}",
                    String::from_utf8_lossy(&fs::read(&p).expect("read"))
                )
            };
            out.insert(rel, v);
        }
    }
    out
}

fn metadata_yaml() -> &'static str {
    super::metadata::tests::SAMPLE
}

fn read(root: &Path, rel: &str) -> String {
    fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn mode(root: &Path, rel: &str) -> u32 {
    fs::symlink_metadata(root.join(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
        .mode()
        & 0o7777
}

#[track_caller]
fn no_secret_in(text: &str) {
    for s in ud::secrets() {
        assert!(!text.contains(&s), "secret {s:.16}… found in:\n{text}");
    }
}

#[test]
fn full_run_writes_every_destination() {
    let img = fixture(FULL);
    let root = img.path();
    let baked: Value =
        serde_json::from_str(&read(root, "home/openclaw/.openclaw/openclaw.json")).unwrap();
    let creds = credentials(&ud::full(), Some(metadata_yaml()));
    let (runner, log) = (FakeRunner::new(root), MemLog::default());
    let out = agent(root, Some(creds.path()), &runner, &log)
        .run()
        .unwrap();
    assert_eq!(out, Outcome::Completed);

    // openclaw.json: tokens and Telegram merged, every baked key kept (SRV-5 mode).
    let cfg: Value =
        serde_json::from_str(&read(root, "home/openclaw/.openclaw/openclaw.json")).unwrap();
    assert_eq!(cfg["gateway"]["auth"]["token"], ud::GATEWAY);
    assert_eq!(cfg["gateway"]["remote"]["token"], ud::GATEWAY);
    assert_eq!(cfg["channels"]["telegram"]["botToken"], ud::TELEGRAM);
    assert_eq!(cfg["channels"]["telegram"]["dmPolicy"], "allowlist");
    assert_eq!(
        cfg["channels"]["telegram"]["allowFrom"],
        serde_json::json!(["123456789", "987654321"])
    );
    assert_eq!(
        cfg["tools"]["elevated"]["allowFrom"]["telegram"],
        serde_json::json!(["123456789", "987654321"])
    );
    let mut stripped = cfg.clone();
    stripped["gateway"]["auth"]
        .as_object_mut()
        .unwrap()
        .remove("token");
    stripped["gateway"]
        .as_object_mut()
        .unwrap()
        .remove("remote");
    stripped.as_object_mut().unwrap().remove("channels");
    stripped["tools"]["elevated"]
        .as_object_mut()
        .unwrap()
        .remove("allowFrom");
    assert_eq!(stripped, baked);
    assert_eq!(mode(root, "home/openclaw/.openclaw/openclaw.json"), 0o600);
    assert_eq!(mode(root, "home/openclaw/.openclaw"), 0o700);

    // Provider auth.
    let env = read(root, "home/openclaw/.openclaw/.env");
    assert!(env.contains(&format!("\nANTHROPIC_OAUTH_TOKEN={}\n", ud::setup_token())));
    assert_eq!(mode(root, "home/openclaw/.openclaw/.env"), 0o600);

    // INF-2.
    assert_eq!(
        read(root, "home/openclaw/.ssh/workspace-deploy-key"),
        ud::deploy_key()
    );
    assert_eq!(mode(root, "home/openclaw/.ssh/workspace-deploy-key"), 0o600);
    assert_eq!(mode(root, "home/openclaw/.ssh"), 0o700);
    let ssh = read(root, "home/openclaw/.ssh/config");
    assert!(
        ssh.contains("Host openclaw-workspace\n    HostName github.com\n    User git\n"),
        "{ssh}"
    );
    assert!(ssh.contains("    IdentitiesOnly yes\n"));
    // ESC-2: the host key from user-data, pinned; no trust on first use.
    for line in [
        "    HostKeyAlias openclaw-workspace\n",
        "    UserKnownHostsFile ~/.ssh/workspace-known-hosts\n",
        "    StrictHostKeyChecking yes\n",
    ] {
        assert!(ssh.contains(line), "{line} not in {ssh}");
    }
    assert!(!ssh.contains("accept-new"), "{ssh}");
    assert_eq!(
        read(root, "home/openclaw/.ssh/workspace-known-hosts")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>(),
        vec![format!("openclaw-workspace {}", ud::HOST_KEY)]
    );
    assert_eq!(
        mode(root, "home/openclaw/.ssh/workspace-known-hosts"),
        0o600
    );
    assert_eq!(
        read(
            root,
            "home/openclaw/.config/openclaw-appliance/workspace-repo"
        ),
        "openclaw-workspace:example/openclaw-workspace.git\n"
    );
    assert_eq!(
        read(root, "home/openclaw/.ssh/authorized_keys")
            .lines()
            .count(),
        2
    );

    // Host keys, swap, host name (user-data beats metadata), IPv6.
    assert!(root.join("etc/ssh/ssh_host_ed25519_key").exists());
    assert_eq!(mode(root, "swapfile"), 0o600);
    assert_eq!(
        fs::metadata(root.join("swapfile")).unwrap().len(),
        100 << 20
    );
    assert!(runner.swaps_active());
    assert_eq!(
        read(root, "etc/fstab")
            .lines()
            .filter(|l| l.starts_with("/swapfile\t"))
            .count(),
        1
    );
    assert_eq!(read(root, "etc/hostname"), "claw-1\n");
    assert!(read(root, "etc/hosts").contains("127.0.1.1\tclaw-1\n"));
    assert_eq!(runner.state().hostname.as_deref(), Some("claw-1"));
    let net = read(root, "etc/systemd/network/09-openclaw-public.network");
    assert!(net.contains("MACAddress=96:00:00:ab:cd:ef\n"));
    assert!(net.contains("Address=2a01:4f8:c17:1234::1/64\nGateway=fe80::1\n"));
    assert!(
        runner
            .calls()
            .iter()
            .any(|c| c == "/usr/bin/growpart /dev/vda 3")
    );

    // TS-1: key by a 0600 file, gone afterwards; hostname, --ssh.
    assert_eq!(runner.state().ts_key_file_mode, Some(0o600));
    assert!(
        !root
            .join("run/openclaw-firstboot/tailscale-auth-key")
            .exists()
    );
    assert!(
        runner
            .calls()
            .iter()
            .any(|c| c.starts_with("/usr/bin/tailscale up --auth-key=file:")
                && c.ends_with("--hostname=claw-1 --ssh --timeout=120s"))
    );
    assert!(
        runner
            .calls()
            .iter()
            .any(|c| c == "/usr/bin/tailscale set --operator= --hostname=claw-1 --ssh")
    );
    // TS-2: no operator right; root points Serve at the gateway's loopback port.
    assert!(
        runner
            .calls()
            .iter()
            .all(|c| !c.contains("--operator=openclaw"))
    );
    assert!(runner.calls().iter().any(|c| c
        == "/usr/bin/timeout --kill-after=10s 90s /usr/bin/tailscale serve --bg --yes --https=443 http://127.0.0.1:18789"));

    // SEC-5 and LAT-1: every rule now, and the boot-time unit installed and enabled.
    assert_eq!(runner.state().iptables.len(), netfilter::rules().len());
    assert!(
        runner
            .state()
            .iptables
            .contains("ip6tables PREROUTING -i docker0 -d fd7a:115c:a1e0::/48 -m comment --comment openclaw LAT-1: no sandbox egress to the tailnet or private ranges -j DROP")
    );
    assert_eq!(
        read(
            root,
            "etc/systemd/system/openclaw-metadata-firewall.service"
        ),
        metadata_firewall_unit_text()
    );
    assert_eq!(
        fs::read_link(
            root.join("etc/systemd/system/sysinit.target.wants/openclaw-metadata-firewall.service")
        )
        .unwrap(),
        Path::new("/etc/systemd/system/openclaw-metadata-firewall.service")
    );

    // SEC-4 bookkeeping.
    assert_eq!(
        read(root, "var/lib/openclaw-appliance/firstboot.done"),
        "first boot completed\n"
    );
    let state: Value =
        serde_json::from_str(&read(root, "var/lib/openclaw-appliance/firstboot.state")).unwrap();
    assert_eq!(
        state["completed"].as_array().unwrap().len(),
        Step::ALL.len()
    );
    assert_eq!(mode(root, "var/lib/openclaw-appliance"), 0o755);

    // SEC-3: no secret in the log, no temp file anywhere.
    no_secret_in(&log.all());
    assert!(
        snapshot(root)
            .keys()
            .all(|k| !k.ends_with(".firstboot-tmp"))
    );
}

#[test]
fn power_cut_after_any_step_converges() {
    // Reference: one uninterrupted run.
    let reference = {
        let img = fixture(FULL);
        let creds = credentials(&ud::full(), Some(metadata_yaml()));
        let (runner, log) = (FakeRunner::new(img.path()), MemLog::default());
        agent(img.path(), Some(creds.path()), &runner, &log)
            .run()
            .unwrap();
        snapshot(img.path())
    };
    for k in 0..Step::ALL.len() {
        for recorded in [false, true] {
            let cut = if recorded {
                Cut::AfterRecord(k)
            } else {
                Cut::BeforeRecord(k)
            };
            let what = format!("a cut after step {k} ({}), {cut:?}", Step::ALL[k].name());
            let img = fixture(FULL);
            let creds = credentials(&ud::full(), Some(metadata_yaml()));
            let (runner, log) = (FakeRunner::new(img.path()), MemLog::default());
            let a = agent(img.path(), Some(creds.path()), &runner, &log);
            let err = a.run_until(Some(cut)).unwrap_err();
            assert!(err.to_string().contains("simulated power cut"), "{err}");
            assert!(
                !img.path()
                    .join("var/lib/openclaw-appliance/firstboot.done")
                    .exists()
            );
            runner.reboot();
            assert_eq!(a.run().unwrap(), Outcome::Completed, "resume after {what}");
            let got = snapshot(img.path());
            for (path, v) in &reference {
                assert_eq!(got.get(path), Some(v), "after {what}: {path}");
            }
            assert_eq!(got.len(), reference.len(), "after {what}: extra files");
            // What a reboot loses comes back: swap via fstab or the step, SEC-5
            // via the boot-time unit or the step.
            assert!(runner.swaps_active(), "swap after {what}");
            assert_eq!(
                runner.state().iptables.len(),
                netfilter::rules().len(),
                "SEC-5/LAT-1 rules after {what}"
            );
            // Recorded steps are not redone; an unrecorded one is, harmlessly.
            let keygen = runner
                .calls()
                .iter()
                .filter(|c| c.contains("ssh-keygen"))
                .count();
            assert_eq!(
                keygen,
                usize::from(k == 0 && !recorded),
                "host keys after {what}"
            );
            no_secret_in(&log.all());
        }
    }
}

#[test]
fn interrupted_write_leaves_nothing_behind() {
    let img = fixture(FULL);
    let root = img.path();
    // A power cut during a write left a half-written temp file of a secret.
    let half = root.join("home/openclaw/.openclaw/.openclaw.json.firstboot-tmp");
    fs::write(&half, "{\"gateway\": {\"auth\": {\"token\": \"half").unwrap();
    fs::create_dir_all(root.join("run/openclaw-firstboot")).unwrap();
    fs::write(
        root.join("run/openclaw-firstboot/tailscale-auth-key"),
        ud::TAILSCALE,
    )
    .unwrap();
    let creds = credentials(&ud::full(), None);
    let (runner, log) = (FakeRunner::new(root), MemLog::default());
    agent(root, Some(creds.path()), &runner, &log)
        .run()
        .unwrap();
    assert!(!half.exists());
    assert!(
        !root
            .join("run/openclaw-firstboot/tailscale-auth-key")
            .exists()
    );
    assert!(
        log.count("left by an interrupted run") == 2,
        "{}",
        log.all()
    );
}

#[test]
fn second_run_is_a_no_op() {
    let img = fixture(FULL);
    let root = img.path();
    let creds = credentials(&ud::full(), Some(metadata_yaml()));
    let (runner, log) = (FakeRunner::new(root), MemLog::default());
    agent(root, Some(creds.path()), &runner, &log)
        .run()
        .unwrap();
    let before = snapshot(root);
    runner.reboot();
    // Even with the user-data gone (and a different one offered), nothing is read or run.
    let other = credentials(&ud::minimal(), None);
    let log2 = MemLog::default();
    let out = agent(root, Some(other.path()), &runner, &log2)
        .run()
        .unwrap();
    assert_eq!(out, Outcome::AlreadyDone);
    assert!(runner.calls().is_empty(), "{:?}", runner.calls());
    assert_eq!(snapshot(root), before);
    assert!(log2.all().contains("already completed"));
    let out = agent(root, None, &runner, &log2).run().unwrap();
    assert_eq!(out, Outcome::AlreadyDone);
}

#[test]
fn invalid_userdata_fails_closed() {
    let img = fixture(FULL);
    let root = img.path();
    let before = snapshot(root);
    let text = ud::full().replace(ud::GATEWAY, "short-secret-value");
    let creds = credentials(&text, Some(metadata_yaml()));
    let (runner, log) = (FakeRunner::new(root), MemLog::default());
    let err = agent(root, Some(creds.path()), &runner, &log)
        .run()
        .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    let report = err.report().join("\n");
    assert!(
        report.contains("user-data field `gateway-token`"),
        "{report}"
    );
    assert!(report.contains("first boot FAILED, nothing was written"));
    assert!(!report.contains("short-secret-value"));
    no_secret_in(&report);
    no_secret_in(&log.all());
    // Nothing written, nothing run, no marker: the gateway stays down.
    assert_eq!(snapshot(root), before);
    assert!(runner.calls().is_empty(), "{:?}", runner.calls());
}

#[test]
fn refuses_to_run_outside_the_appliance() {
    let img = fixture(FULL);
    fs::remove_file(
        img.path()
            .join("usr/share/openclaw-appliance/manifest.json"),
    )
    .unwrap();
    let before = snapshot(img.path());
    let creds = credentials(&ud::full(), None);
    let (runner, log) = (FakeRunner::new(img.path()), MemLog::default());
    let err = agent(img.path(), Some(creds.path()), &runner, &log)
        .run()
        .unwrap_err();
    assert!(
        err.to_string().contains("not an OpenClaw appliance image"),
        "{err}"
    );
    assert_eq!(err.exit_code(), 1);
    assert_eq!(snapshot(img.path()), before);
    assert!(runner.calls().is_empty());
}

#[test]
fn image_with_tailscale_requires_the_key() {
    let img = fixture(FULL);
    let before = snapshot(img.path());
    let text = ud::minimal().replace(&format!("tailscale-auth-key = \"{}\"\n", ud::TAILSCALE), "");
    let creds = credentials(&text, None);
    let (runner, log) = (FakeRunner::new(img.path()), MemLog::default());
    let err = agent(img.path(), Some(creds.path()), &runner, &log)
        .run()
        .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(
        err.report()[0].contains("`tailscale-auth-key`"),
        "{:?}",
        err.report()
    );
    assert_eq!(snapshot(img.path()), before);
}

#[test]
fn image_without_tailscale_says_so_once() {
    let img = fixture(ImageOpts {
        tailscale: false,
        serve: false,
        sshd: false,
    });
    let text = ud::minimal().replace(&format!("tailscale-auth-key = \"{}\"\n", ud::TAILSCALE), "");
    let creds = credentials(&text, Some(metadata_yaml()));
    let (runner, log) = (FakeRunner::new(img.path()), MemLog::default());
    agent(img.path(), Some(creds.path()), &runner, &log)
        .run()
        .unwrap();
    assert_eq!(
        log.count("Tailscale login skipped: this image has no Tailscale"),
        1
    );
    assert!(runner.calls().iter().all(|c| !c.contains("tailscale")));
    assert!(runner.calls().iter().all(|c| !c.contains("ssh-keygen")));
    assert!(
        !img.path()
            .join("home/openclaw/.ssh/authorized_keys")
            .exists()
    );
    assert_eq!(log.count("the image has no OpenSSH server"), 1);
    // The metadata's host name applies when user-data has none.
    assert_eq!(read(img.path(), "etc/hostname"), "claw-from-metadata\n");
}

#[test]
fn serve_off_in_the_spec_leaves_serve_alone() {
    let img = fixture(ImageOpts {
        serve: false,
        ..FULL
    });
    let creds = credentials(&ud::minimal(), Some(metadata_yaml()));
    let (runner, log) = (FakeRunner::new(img.path()), MemLog::default());
    agent(img.path(), Some(creds.path()), &runner, &log)
        .run()
        .unwrap();
    let calls = runner.calls();
    assert!(
        calls
            .iter()
            .any(|c| c.contains("tailscale set --operator= "))
    );
    assert!(calls.iter().all(|c| !c.contains(" serve ")), "{calls:?}");
}

#[test]
fn a_login_server_goes_to_tailscale_up_only() {
    let img = fixture(FULL);
    let text = format!(
        "{}tailscale-login-server = \"http://10.77.0.99:8080\"\n",
        ud::minimal()
    );
    let creds = credentials(&text, Some(metadata_yaml()));
    let (runner, log) = (FakeRunner::new(img.path()), MemLog::default());
    agent(img.path(), Some(creds.path()), &runner, &log)
        .run()
        .unwrap();
    let calls = runner.calls();
    let with_server: Vec<&String> = calls
        .iter()
        .filter(|c| c.contains("--login-server="))
        .collect();
    assert_eq!(with_server.len(), 1, "{calls:?}");
    assert!(
        with_server[0].starts_with("/usr/bin/tailscale up --auth-key=file:")
            && with_server[0]
                .ends_with("--ssh --timeout=120s --login-server=http://10.77.0.99:8080"),
        "{calls:?}"
    );
}

#[test]
fn generated_token_survives_a_power_cut() {
    let img = fixture(FULL);
    let root = img.path();
    let creds = credentials(&ud::minimal(), None);
    let (runner, log) = (FakeRunner::new(root), MemLog::default());
    let a = agent(root, Some(creds.path()), &runner, &log);
    let gateway = Step::ALL
        .iter()
        .position(|s| *s == Step::GatewayConfig)
        .unwrap();
    a.run_until(Some(Cut::AfterRecord(gateway))).unwrap_err();
    let cfg: Value =
        serde_json::from_str(&read(root, "home/openclaw/.openclaw/openclaw.json")).unwrap();
    let expected: String = (0u8..32).map(|b| format!("{b:02x}")).collect();
    assert_eq!(cfg["gateway"]["auth"]["token"], expected.as_str());
    assert!(!log.all().contains(&expected));
    // The next boot has other randomness; the token stays what was written.
    fs::write(root.join("dev/urandom"), [0xffu8; 64]).unwrap();
    runner.reboot();
    // Force the config step to run again, as after a cut just before its record.
    let state = root.join("var/lib/openclaw-appliance/firstboot.state");
    let s = read(root, "var/lib/openclaw-appliance/firstboot.state")
        .replace(",\n    \"gateway-config\"", "");
    fs::write(&state, s).unwrap();
    a.run().unwrap();
    let cfg: Value =
        serde_json::from_str(&read(root, "home/openclaw/.openclaw/openclaw.json")).unwrap();
    assert_eq!(cfg["gateway"]["auth"]["token"], expected.as_str());
    assert_eq!(cfg["gateway"]["remote"]["token"], expected.as_str());
    assert!(
        log.count("kept from an interrupted earlier run") == 1,
        "{}",
        log.all()
    );
    assert!(!log.all().contains(&expected));
}

/// On a volume, a token in the config is "kept from the state volume" only
/// when an earlier first boot completed on that volume (a rebuild); a first
/// boot cut short on a new volume kept it from that interrupted run.
#[test]
fn a_kept_token_is_credited_to_the_volume_only_after_a_completed_first_boot() {
    for (record, said) in [
        (None, "kept from an interrupted earlier run"),
        (
            Some(
                "first boot completed: root disk machine-id aa, image x, gateway token generated\n",
            ),
            "kept from the state volume",
        ),
    ] {
        let img = fixture(FULL);
        let root = img.path();
        let creds = credentials(&ud::minimal(), None);
        let (runner, log) = (FakeRunner::new(root), MemLog::default());
        let image_config = read(root, "home/openclaw/.openclaw/openclaw.json");
        let copy = root.join(volume::IMAGE_CONFIG_COPY.trim_start_matches('/'));
        fs::create_dir_all(copy.parent().unwrap()).unwrap();
        fs::write(&copy, &image_config).unwrap();
        // The token an earlier root disk (or an interrupted run) left.
        let mut cfg: Value = serde_json::from_str(&image_config).unwrap();
        cfg["gateway"]["auth"]["token"] = Value::String("k".repeat(48));
        fs::write(
            root.join("home/openclaw/.openclaw/openclaw.json"),
            cfg.to_string(),
        )
        .unwrap();
        if let Some(line) = record {
            let path = root.join(volume::RECORD.trim_start_matches('/'));
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, line).unwrap();
        }
        let a = agent(root, Some(creds.path()), &runner, &log);
        a.run().unwrap();
        assert!(log.count(said) == 1, "{}", log.all());
        let cfg: Value =
            serde_json::from_str(&read(root, "home/openclaw/.openclaw/openclaw.json")).unwrap();
        assert_eq!(cfg["gateway"]["auth"]["token"], "k".repeat(48).as_str());
    }
}

#[test]
fn a_starting_tailscaled_with_state_is_waited_for_not_logged_in_again() {
    let img = fixture(FULL);
    let root = img.path();
    let creds = credentials(&ud::full(), None);
    let (runner, log) = (FakeRunner::new(root), MemLog::default());
    runner.state().ts_starting = 1;
    agent(root, Some(creds.path()), &runner, &log)
        .run()
        .unwrap();
    let calls = runner.calls();
    assert!(
        !calls.iter().any(|c| c.contains("tailscale up")),
        "the auth key was used: {calls:?}"
    );
    assert_eq!(
        log.count("step tailscale: already logged in"),
        1,
        "{}",
        log.all()
    );
}

#[test]
fn failed_tailscale_login_is_scrubbed_and_retried() {
    let img = fixture(FULL);
    let root = img.path();
    let creds = credentials(&ud::full(), None);
    let (runner, log) = (FakeRunner::new(root), MemLog::default());
    runner.state().ts_up_fails = true;
    let a = agent(root, Some(creds.path()), &runner, &log);
    let err = a.run().unwrap_err();
    assert_eq!(err.exit_code(), 1);
    let report = err.report().join("\n");
    assert!(report.contains("step `tailscale`"), "{report}");
    // The documented example is what an operator sees (paths aside).
    let doc = include_str!("../../../docs/first-boot.md");
    let root_shown = root.to_string_lossy().into_owned();
    for line in err.report() {
        let line = line.replace(&root_shown, "");
        assert!(
            doc.contains(&format!("openclaw-firstboot: error: {line}")),
            "not in the docs: {line}"
        );
    }
    assert!(report.contains("<redacted>"), "{report}");
    no_secret_in(&report);
    assert!(
        !root
            .join("run/openclaw-firstboot/tailscale-auth-key")
            .exists()
    );
    assert!(
        !root
            .join("var/lib/openclaw-appliance/firstboot.done")
            .exists()
    );
    // Fixed (a new key would do the same); a retry redoes only what is left.
    runner.state().ts_up_fails = false;
    runner.reboot();
    a.run().unwrap();
    assert!(
        runner
            .calls()
            .iter()
            .all(|c| !c.contains("ssh-keygen") && !c.contains("growpart"))
    );
    assert!(
        root.join("var/lib/openclaw-appliance/firstboot.done")
            .exists()
    );
}

#[test]
fn userdata_from_the_metadata_service() {
    let img = fixture(FULL);
    let root = img.path();
    let text = ud::minimal();
    let server = Server::start(
        vec![Reply::Status(404), Reply::Ok(text)],
        vec![Reply::Ok(metadata_yaml().into())],
    );
    let (runner, log) = (FakeRunner::new(root), MemLog::default());
    let mut a = agent(root, None, &runner, &log);
    a.metadata_url = Some(server.base.clone());
    a.run().unwrap();
    assert!(log.all().contains("read from the metadata service"));
    assert_eq!(read(root, "etc/hostname"), "claw-from-metadata\n");
    assert_eq!(
        read(root, "home/openclaw/.ssh/authorized_keys")
            .lines()
            .count(),
        2
    );
    assert!(
        server
            .paths()
            .iter()
            .filter(|p| p.ends_with("/userdata"))
            .count()
            == 2
    );
    no_secret_in(&log.all());
}

#[test]
fn metadata_firewall_is_idempotent() {
    let runner = FakeRunner::new(Path::new("/nonexistent"));
    assert_eq!(
        apply_metadata_firewall(&runner).unwrap(),
        netfilter::rules().len()
    );
    assert_eq!(apply_metadata_firewall(&runner).unwrap(), 0);
    let calls = runner.calls();
    assert!(
        calls
            .iter()
            .any(|c| c.contains("-t raw -A OUTPUT -d 169.254.169.254/32 -m owner ! --uid-owner 0"))
    );
    assert!(
        calls
            .iter()
            .any(|c| c.contains("-t raw -A PREROUTING -d 169.254.169.254/32"))
    );
    assert!(
        calls
            .iter()
            .any(|c| c
                .starts_with("/usr/sbin/ip6tables -w -t raw -A PREROUTING -i br-+ -d fc00::/7"))
    );
}

#[test]
fn units_agree_with_the_image() {
    let unit = unit_text();
    for line in [
        format!("ConditionPathExists=!{DONE_MARKER}"),
        "After=network-online.target".into(),
        "Wants=network-online.target".into(),
        "Before=openclaw-sandbox-image.service user@1000.service".into(),
        "Type=oneshot".into(),
        "ImportCredential=openclaw.*".into(),
        "StandardOutput=journal+console".into(),
        format!("ExecStart={BINARY_PATH}"),
    ] {
        assert!(
            unit.lines().any(|l| l.starts_with(&line)),
            "missing {line}:\n{unit}"
        );
    }
    assert!(!unit.contains("RemainAfterExit"));
    assert!(
        metadata_firewall_unit_text()
            .contains(&format!("ExecStart={BINARY_PATH} --metadata-firewall"))
    );
    // The gateway waits for exactly our marker, and for us.
    let spec = spec();
    let ctx = crate::files::Context {
        tailscale: true,
        root_fs_uuid: "u".into(),
        esp_volume_id: "v".into(),
        sandbox_image_id: "w".into(),
    };
    let tree = crate::files::render(&spec, &ctx);
    let gw = tree
        .text("etc/systemd/system/openclaw-gateway.service")
        .unwrap_or_default();
    assert!(
        gw.contains(&format!("ConditionPathExists={DONE_MARKER}\n")),
        "{gw}"
    );
    assert!(
        gw.lines()
            .any(|l| l.starts_with("After=") && l.contains("openclaw-firstboot.service")),
        "{gw}"
    );
    // The image ships no swap line (first boot adds it).
    assert!(
        !tree
            .text("etc/fstab")
            .unwrap_or_default()
            .contains(SWAPFILE)
    );
}

#[test]
fn documented_example_is_valid_and_every_field_is_documented() {
    let doc = include_str!("../../../docs/first-boot.md");
    let start = doc
        .find("<!-- user-data example: a test parses this block -->\n```toml\n")
        .expect("example marker");
    let body = &doc[start..];
    let body = &body[body.find("```toml\n").unwrap_or(0) + "```toml\n".len()..];
    let example = &body[..body.find("```").expect("end of example")];
    let parsed = parse_userdata(example).expect("the documented example parses");
    assert!(parsed.telegram.is_some() && parsed.workspace.is_some());
    for field in FIELDS {
        assert!(
            doc.contains(&format!("| `{field}` |")),
            "{field} not in docs/first-boot.md"
        );
    }
    // The documented error lines are what the code prints.
    let text = format!(
        "{USERDATA_FIRST_LINE}\ntailscale-auth-key = \"{}\"\ngateway-token = \"{}\"\n",
        ud::TAILSCALE,
        "x".repeat(20)
    );
    let err = parse_userdata(&text).unwrap_err();
    for line in Error::UserData(err).report() {
        assert!(
            doc.contains(&format!("openclaw-firstboot: error: {line}")),
            "not in the docs: {line}"
        );
    }
    assert_eq!(format!("/{}", crate::files::MANIFEST), MANIFEST);
}
