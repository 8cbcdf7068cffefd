//! The steps of first boot, in order. Each is idempotent: run twice, or
//! cut off anywhere and run again, it ends in the same state (SEC-4).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use serde_json::{Value, json};

use super::fsutil::{
    self, Owner, ensure_dir, ensure_file, io_err, remove_file_if_exists, temp_path,
};
use super::host::CmdOutput;
use super::netfilter;
use super::secret::{Scrubber, Secret};
use super::userdata::{Telegram, WORKSPACE_HOST_ALIAS, Workspace};
use super::{
    AUTHORIZED_KEYS, Agent, DEPLOY_KEY, Error, Ipv6Config, KNOWN_HOSTS, OPENCLAW_JSON,
    PROVIDER_ENV, Plan, RUN_DIR, SSH_CONFIG, SWAP_MAX_BYTES, SWAPFILE, TAILSCALE_KEY_FILE,
    WORKSPACE_REPO,
};

/// How long first boot lets a starting tailscaled settle (see
/// `tailscale_running`).
const TAILSCALE_SETTLE: std::time::Duration = std::time::Duration::from_secs(90);
/// How often it asks meanwhile.
const TAILSCALE_POLL: std::time::Duration = std::time::Duration::from_secs(2);
/// `timeout` and its arguments around each `tailscale status`.
const STATUS_TIMEOUT: [&str; 3] = ["/usr/bin/timeout", "--kill-after=5s", "15s"];
/// `timeout` and its arguments around `tailscale set`.
const SET_TIMEOUT: [&str; 3] = ["/usr/bin/timeout", "--kill-after=10s", "60s"];
/// `timeout` and its arguments around `tailscale serve`.
const SERVE_TIMEOUT: [&str; 3] = ["/usr/bin/timeout", "--kill-after=10s", "90s"];

/// The gateway's port in the new `openclaw.json` (`gateway.port`), which
/// Tailscale Serve proxies to.
fn gateway_port(plan: &Plan) -> Result<u16, Error> {
    serde_json::from_str::<Value>(plan.openclaw_json.expose())
        .ok()
        .and_then(|v| v.pointer("/gateway/port")?.as_u64())
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| {
            Error::Invalid(format!(
                "~/{OPENCLAW_JSON} has no gateway.port for Tailscale Serve to proxy to"
            ))
        })
}

/// The public interface's network file when the metadata names its MAC
/// address; sorts before the image's `10-wired.network`, so it wins.
pub(super) const NETWORK_FILE: &str = "/etc/systemd/network/09-openclaw-public.network";
/// Without a MAC address: a drop-in for the image's `10-wired.network`.
pub(super) const NETWORK_DROPIN: &str =
    "/etc/systemd/network/10-wired.network.d/60-openclaw-ipv6.conf";
const MIB: u64 = 1 << 20;
const SWAP_MIN_BYTES: u64 = 64 * MIB;

/// One step of first boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// SSH host keys, when OpenSSH is installed (SSH-2).
    HostKeys,
    /// Root partition and filesystem fill the disk (BOOT-2).
    GrowRoot,
    /// `/swapfile`, 600, root, active (SRV-6).
    Swap,
    /// Host name from user-data or metadata.
    Hostname,
    /// Static IPv6 from the metadata (Hetzner sends no router advertisements).
    Network,
    /// Gateway token (and Telegram) merged into `openclaw.json` (NET-6, NET-7, SRV-5).
    GatewayConfig,
    /// The Anthropic setup token for the gateway.
    ProviderAuth,
    /// Workspace deploy key, SSH host alias, remote (INF-2).
    Workspace,
    /// `authorized_keys` from the metadata, when OpenSSH is installed.
    AuthorizedKeys,
    /// `tailscale up` with the auth key by file, `--ssh`, no operator;
    /// Serve to the gateway set by root (TS-1, TS-2).
    Tailscale,
    /// Metadata service closed to non-root users and containers (SEC-5).
    MetadataFirewall,
}

impl Step {
    /// Every step, in the order they run.
    pub const ALL: [Step; 11] = [
        Step::HostKeys,
        Step::GrowRoot,
        Step::Swap,
        Step::Hostname,
        Step::Network,
        Step::GatewayConfig,
        Step::ProviderAuth,
        Step::Workspace,
        Step::AuthorizedKeys,
        Step::Tailscale,
        Step::MetadataFirewall,
    ];

    /// The step's name in logs and in the state file.
    pub fn name(self) -> &'static str {
        match self {
            Step::HostKeys => "host-keys",
            Step::GrowRoot => "grow-root",
            Step::Swap => "swap",
            Step::Hostname => "hostname",
            Step::Network => "network",
            Step::GatewayConfig => "gateway-config",
            Step::ProviderAuth => "provider-auth",
            Step::Workspace => "workspace",
            Step::AuthorizedKeys => "authorized-keys",
            Step::Tailscale => "tailscale",
            Step::MetadataFirewall => "metadata-firewall",
        }
    }

    fn from_name(name: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// The state file: which steps have completed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct State {
    pub(super) completed: Vec<Step>,
}

impl State {
    pub(super) fn load(path: &Path) -> Result<State, Error> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
            Err(e) => return Err(io_err(path)(e)),
        };
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| Error::Invalid(format!("{}: not valid JSON: {e}", path.display())))?;
        let completed = v
            .get("completed")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .filter_map(Step::from_name)
                    .collect()
            })
            .unwrap_or_default();
        Ok(State { completed })
    }

    pub(super) fn save(&self, path: &Path, owner: Owner) -> Result<(), Error> {
        let names: Vec<&str> = self.completed.iter().map(|s| s.name()).collect();
        let mut text = serde_json::to_string_pretty(&json!({"format": 1, "completed": names}))
            .map_err(|e| Error::Invalid(e.to_string()))?;
        text.push('\n');
        ensure_file(path, 0o644, owner, text.as_bytes()).map(|_| ())
    }
}

/// Puts the gateway token into `gateway.auth.token` and
/// `gateway.remote.token`, and the Telegram channel (DM allowlist, and the
/// same ids as approvers of elevated tools, as the seed does) when given.
/// Every other key of the baked file stays as it is.
pub(super) fn merge_config(
    config: &mut Value,
    token: &Secret,
    telegram: Option<&Telegram>,
) -> Result<(), Error> {
    set(config, &["gateway", "auth", "token"], json!(token.expose()))?;
    set(
        config,
        &["gateway", "remote", "token"],
        json!(token.expose()),
    )?;
    if let Some(tg) = telegram {
        let ids: Vec<Value> = tg
            .allowed_users
            .iter()
            .map(|id| Value::String(id.to_string()))
            .collect();
        set(config, &["channels", "telegram", "enabled"], json!(true))?;
        set(
            config,
            &["channels", "telegram", "botToken"],
            json!(tg.bot_token.expose()),
        )?;
        set(
            config,
            &["channels", "telegram", "dmPolicy"],
            json!("allowlist"),
        )?;
        set(
            config,
            &["channels", "telegram", "allowFrom"],
            Value::Array(ids.clone()),
        )?;
        set(
            config,
            &["tools", "elevated", "allowFrom", "telegram"],
            Value::Array(ids),
        )?;
    }
    Ok(())
}

fn set(config: &mut Value, path: &[&str], value: Value) -> Result<(), Error> {
    let mut node = config;
    for (i, key) in path.iter().enumerate() {
        let Value::Object(map) = node else {
            return Err(Error::Invalid(format!(
                "openclaw.json: `{}` is not an object",
                path[..i].join(".")
            )));
        };
        if i == path.len() - 1 {
            map.insert((*key).to_string(), value);
            return Ok(());
        }
        node = map
            .entry((*key).to_string())
            .or_insert_with(|| Value::Object(Default::default()));
    }
    Ok(())
}

impl Agent<'_> {
    /// Runs one step; returns a one-line note for the log.
    pub(super) fn step(&self, step: Step, plan: &Plan, scrub: &Scrubber) -> Result<String, Error> {
        match step {
            Step::HostKeys => self.host_keys(plan, scrub),
            Step::GrowRoot => self.grow_root(scrub),
            Step::Swap => self.swap(scrub),
            Step::Hostname => self.hostname(plan, scrub),
            Step::Network => self.network(plan),
            Step::GatewayConfig => self.gateway_config(plan),
            Step::ProviderAuth => self.provider_auth(plan),
            Step::Workspace => self.workspace(plan),
            Step::AuthorizedKeys => self.authorized_keys(plan),
            Step::Tailscale => self.tailscale(plan, scrub),
            Step::MetadataFirewall => self.metadata_firewall(),
        }
    }

    pub(super) fn cmd(&self, program: &str, args: &[&str]) -> Result<CmdOutput, Error> {
        self.runner.run(program, args).map_err(|e| Error::Command {
            command: command_line(program, args),
            status: "could not start".into(),
            detail: format!(": {e}"),
        })
    }

    /// Runs a program that must succeed; its stderr tail goes into the error
    /// after every known secret is scrubbed from it.
    pub(super) fn cmd_ok(
        &self,
        program: &str,
        args: &[&str],
        scrub: &Scrubber,
    ) -> Result<CmdOutput, Error> {
        let out = self.cmd(program, args)?;
        if out.success() {
            return Ok(out);
        }
        Err(failed(program, args, &out, scrub))
    }

    fn host_keys(&self, plan: &Plan, scrub: &Scrubber) -> Result<String, Error> {
        if !plan.image.sshd {
            return Ok(
                "skipped: no OpenSSH server in this image (admin access is Tailscale SSH)".into(),
            );
        }
        // A key pair an interrupted ssh-keygen left empty or half: remove, regenerate.
        let dir = self.layout.path("/etc/ssh");
        let empty = |p: &Path| fs::metadata(p).map(|m| m.len() == 0).unwrap_or(true);
        if let Ok(entries) = fs::read_dir(&dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("ssh_host_") && name.ends_with("_key") {
                    let public = dir.join(format!("{name}.pub"));
                    if empty(&e.path()) || empty(&public) {
                        remove_file_if_exists(&e.path())?;
                        remove_file_if_exists(&public)?;
                    }
                }
            }
        }
        let root = self.layout.root.to_string_lossy().into_owned();
        let mut args = vec!["-A"];
        if !self.layout.is_real_root() {
            args.extend(["-f", root.as_str()]);
        }
        self.cmd_ok("/usr/bin/ssh-keygen", &args, scrub)?;
        Ok("SSH host keys present (ssh-keygen -A)".into())
    }

    fn grow_root(&self, scrub: &Scrubber) -> Result<String, Error> {
        if !self.layout.path("/usr/bin/growpart").exists() {
            return Ok("skipped: growpart (cloud-guest-utils) is not installed".into());
        }
        let out = self.cmd_ok("/usr/bin/findmnt", &["-n", "-o", "SOURCE", "/"], scrub)?;
        let source = out.stdout.trim().to_string();
        if !source.starts_with("/dev/") {
            return Ok(format!(
                "skipped: the root filesystem is on `{source}`, not a disk partition"
            ));
        }
        let out = self.cmd_ok(
            "/usr/bin/lsblk",
            &["-n", "-d", "-o", "PKNAME,PARTN", &source],
            scrub,
        )?;
        let mut words = out.stdout.split_whitespace();
        let (Some(disk), Some(partn)) = (words.next(), words.next()) else {
            return Ok(format!("skipped: {source} is not a partition"));
        };
        let disk_ok = disk
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !disk_ok || !partn.chars().all(|c| c.is_ascii_digit()) {
            return Err(Error::Invalid(format!(
                "lsblk reported an unexpected parent/partition for {source}"
            )));
        }
        let disk = format!("/dev/{disk}");
        let out = self.cmd("/usr/bin/growpart", &[&disk, partn])?;
        let grew = match out.code {
            Some(0) => true,
            Some(1) if out.stdout.contains("NOCHANGE") => false,
            _ => return Err(failed("/usr/bin/growpart", &[&disk, partn], &out, scrub)),
        };
        self.cmd_ok("/usr/sbin/resize2fs", &[&source], scrub)?;
        Ok(if grew {
            format!("partition {partn} of {disk} grown to the end of the disk; {source} resized")
        } else {
            format!("partition {partn} of {disk} already fills the disk; {source} checked")
        })
    }

    fn swap(&self, scrub: &Scrubber) -> Result<String, Error> {
        let swapfile = self.layout.path(SWAPFILE);
        let shown = swapfile.to_string_lossy().into_owned();
        if !has_swap_signature(&swapfile) {
            let Some(size) = self.swap_size(scrub)? else {
                return Ok("skipped: the root filesystem is too small for a swap file".into());
            };
            let tmp = temp_path(&swapfile);
            let made = self.make_swapfile(&tmp, size, scrub).and_then(|()| {
                fs::rename(&tmp, &swapfile).map_err(io_err(&swapfile))?;
                fsutil::sync_dir(swapfile.parent().unwrap_or(Path::new("/")))
            });
            if made.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            made?;
        }
        fs::set_permissions(&swapfile, fs::Permissions::from_mode(0o600))
            .map_err(io_err(&swapfile))?;
        // Later boots: the image's fstab has no swap line (a missing file
        // would be a failed unit at first boot), so add it now.
        let fstab = self.layout.path("/etc/fstab");
        let text = fs::read_to_string(&fstab).map_err(io_err(&fstab))?;
        ensure_file(
            &fstab,
            0o644,
            self.root_owner(),
            fstab_with_swap(&text).as_bytes(),
        )?;
        let size = fs::metadata(&swapfile).map(|m| m.len()).unwrap_or(0);
        if self.swap_active(&shown) {
            return Ok(format!("{SWAPFILE} ({} MiB) already active", size / MIB));
        }
        self.cmd_ok("/usr/sbin/swapon", &[&shown], scrub)?;
        Ok(format!(
            "{SWAPFILE} ({} MiB, mode 600) active and in /etc/fstab",
            size / MIB
        ))
    }

    fn make_swapfile(&self, tmp: &Path, size: u64, scrub: &Scrubber) -> Result<(), Error> {
        remove_file_if_exists(tmp)?;
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tmp)
            .map_err(io_err(tmp))?;
        if let Some((u, g)) = self.root_owner() {
            std::os::unix::fs::fchown(&f, Some(u), Some(g)).map_err(io_err(tmp))?;
        }
        f.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io_err(tmp))?;
        drop(f);
        let shown = tmp.to_string_lossy();
        self.cmd_ok(
            "/usr/bin/fallocate",
            &["-l", &size.to_string(), &shown],
            scrub,
        )?;
        self.cmd_ok("/usr/sbin/mkswap", &[&shown], scrub)?;
        File::open(tmp)
            .and_then(|f| f.sync_all())
            .map_err(io_err(tmp))
    }

    /// min(2 GiB, ¼ of the root filesystem), whole MiB; `None` below 64 MiB.
    fn swap_size(&self, scrub: &Scrubber) -> Result<Option<u64>, Error> {
        let out = self.cmd_ok("/usr/bin/findmnt", &["-n", "-b", "-o", "SIZE", "/"], scrub)?;
        let total: u64 = out.stdout.trim().parse().map_err(|_| {
            Error::Invalid("findmnt did not report the root filesystem's size".into())
        })?;
        let size = (total / 4).min(SWAP_MAX_BYTES) / MIB * MIB;
        Ok((size >= SWAP_MIN_BYTES).then_some(size))
    }

    fn swap_active(&self, shown: &str) -> bool {
        fs::read_to_string(self.layout.path("/proc/swaps"))
            .map(|t| {
                t.lines()
                    .skip(1)
                    .any(|l| l.split_whitespace().next() == Some(shown))
            })
            .unwrap_or(false)
    }

    fn hostname(&self, plan: &Plan, scrub: &Scrubber) -> Result<String, Error> {
        let Some(name) = &plan.hostname else {
            return Ok(format!(
                "skipped: no hostname in user-data or metadata; keeping `{}`",
                plan.image.default_hostname
            ));
        };
        let owner = self.root_owner();
        ensure_file(
            &self.layout.path("/etc/hostname"),
            0o644,
            owner,
            format!("{name}\n").as_bytes(),
        )?;
        let hosts_path = self.layout.path("/etc/hosts");
        let hosts = fs::read_to_string(&hosts_path).unwrap_or_default();
        ensure_file(
            &hosts_path,
            0o644,
            owner,
            hosts_with(&hosts, name).as_bytes(),
        )?;
        self.cmd_ok("/usr/bin/hostname", &[name], scrub)?;
        Ok(format!("host name `{name}`"))
    }

    fn network(&self, plan: &Plan) -> Result<String, Error> {
        let Some(v6) = &plan.metadata.ipv6 else {
            return Ok("skipped: no static IPv6 in the metadata".into());
        };
        let (file, other) = if v6.mac.is_some() {
            (NETWORK_FILE, NETWORK_DROPIN)
        } else {
            (NETWORK_DROPIN, NETWORK_FILE)
        };
        let path = self.layout.path(file);
        if let Some(dir) = path.parent() {
            ensure_dir(dir, 0o755, self.root_owner())?;
        }
        ensure_file(&path, 0o644, self.root_owner(), network_text(v6).as_bytes())?;
        remove_file_if_exists(&self.layout.path(other))?;
        match self.runner.run("/usr/bin/networkctl", &["reload"]) {
            Ok(out) if out.success() => {}
            _ => self
                .log
                .warn("`networkctl reload` failed; the IPv6 address applies from the next boot"),
        }
        Ok(format!(
            "IPv6 {}/{} via {} in {file}",
            v6.address, v6.prefix, v6.gateway
        ))
    }

    fn gateway_config(&self, plan: &Plan) -> Result<String, Error> {
        let user = &plan.image.user;
        let owner = self.user_owner(user);
        ensure_dir(&self.home_path(user, ".openclaw"), 0o700, owner)?;
        ensure_file(
            &self.home_path(user, OPENCLAW_JSON),
            0o600,
            owner,
            plan.openclaw_json.expose().as_bytes(),
        )?;
        let telegram = match &plan.userdata.telegram {
            Some(t) => format!(
                "; Telegram channel with {} allowed user(s), who also approve elevated tools",
                t.allowed_users.len()
            ),
            None => String::new(),
        };
        Ok(format!(
            "~/{OPENCLAW_JSON}: gateway token {} (gateway.auth.token, gateway.remote.token){telegram}",
            plan.token_origin
        ))
    }

    fn provider_auth(&self, plan: &Plan) -> Result<String, Error> {
        let user = &plan.image.user;
        let owner = self.user_owner(user);
        ensure_dir(&self.home_path(user, ".openclaw"), 0o700, owner)?;
        let text = Secret::new(format!(
            "# Written by openclaw-firstboot: model provider auth for the gateway\n\
             # (OpenClaw reads $OPENCLAW_STATE_DIR/.env; see docs/first-boot.md).\n\
             ANTHROPIC_OAUTH_TOKEN={}\n",
            plan.userdata.anthropic_setup_token.expose()
        ));
        ensure_file(
            &self.home_path(user, PROVIDER_ENV),
            0o600,
            owner,
            text.expose().as_bytes(),
        )?;
        Ok(format!(
            "~/{PROVIDER_ENV}: Anthropic setup token (ANTHROPIC_OAUTH_TOKEN)"
        ))
    }

    fn workspace(&self, plan: &Plan) -> Result<String, Error> {
        let Some(ws) = &plan.userdata.workspace else {
            return Ok("skipped: no workspace-deploy-key in user-data".into());
        };
        let user = &plan.image.user;
        let owner = self.user_owner(user);
        ensure_dir(&self.home_path(user, ".ssh"), 0o700, owner)?;
        ensure_file(
            &self.home_path(user, DEPLOY_KEY),
            0o600,
            owner,
            ws.deploy_key.expose().as_bytes(),
        )?;
        ensure_file(
            &self.home_path(user, SSH_CONFIG),
            0o600,
            owner,
            ssh_config(ws).as_bytes(),
        )?;
        if !ws.host_keys.is_empty() {
            ensure_file(
                &self.home_path(user, KNOWN_HOSTS),
                0o600,
                owner,
                known_hosts(ws).as_bytes(),
            )?;
        }
        ensure_dir(&self.home_path(user, ".config"), 0o700, owner)?;
        ensure_dir(
            &self.home_path(user, ".config/openclaw-appliance"),
            0o700,
            owner,
        )?;
        ensure_file(
            &self.home_path(user, WORKSPACE_REPO),
            0o600,
            owner,
            format!("{}\n", ws.repo.alias_url()).as_bytes(),
        )?;
        let pinned = match ws.host_keys.len() {
            0 => "no host key pinned: the sync commits locally and does not contact the \
                  remote until user-data sets `workspace-repo-host-key`"
                .to_string(),
            n => format!("{n} host key(s) pinned in ~/{KNOWN_HOSTS}"),
        };
        Ok(format!(
            "~/{DEPLOY_KEY} and host alias `{WORKSPACE_HOST_ALIAS}` for {} (IdentitiesOnly); {pinned}",
            ws.repo.host
        ))
    }

    fn authorized_keys(&self, plan: &Plan) -> Result<String, Error> {
        let keys = &plan.metadata.public_keys;
        if !plan.image.sshd {
            return Ok(if keys.is_empty() {
                "skipped: no OpenSSH server in this image".into()
            } else {
                format!(
                    "skipped: the metadata lists {} public key(s), but the image has no OpenSSH server (admin access is Tailscale SSH)",
                    keys.len()
                )
            });
        }
        if keys.is_empty() {
            return Ok("skipped: no public keys in the metadata".into());
        }
        let user = &plan.image.user;
        let owner = self.user_owner(user);
        ensure_dir(&self.home_path(user, ".ssh"), 0o700, owner)?;
        let mut text = keys.join("\n");
        text.push('\n');
        ensure_file(
            &self.home_path(user, AUTHORIZED_KEYS),
            0o600,
            owner,
            text.as_bytes(),
        )?;
        Ok(format!(
            "~/{AUTHORIZED_KEYS}: {} key(s) from the metadata",
            keys.len()
        ))
    }

    fn tailscale(&self, plan: &Plan, scrub: &Scrubber) -> Result<String, Error> {
        let Some(bin) = &plan.image.tailscale else {
            self.log.info(
                "Tailscale login skipped: this image has no Tailscale (it was built without the \
                 Tailscale tarball; the gateway runs with tailscale.mode=off and TS-1/NET-8 do not hold)",
            );
            return Ok("skipped: no Tailscale in this image".into());
        };
        let Some(key) = &plan.userdata.tailscale_auth_key else {
            return Err(Error::Invalid(
                "no tailscale-auth-key (checked before: unreachable)".into(),
            ));
        };
        let host = plan
            .hostname
            .as_deref()
            .unwrap_or(&plan.image.default_hostname);
        let label = host.split('.').next().unwrap_or(host);
        let hostname_arg = format!("--hostname={label}");
        let already = self.tailscale_running(bin);
        if !already {
            // TS-1: the key goes by a 0600 file in a 0700 tmpfs directory,
            // never on argv, and the file is removed as soon as `up` returns.
            ensure_dir(&self.layout.path(RUN_DIR), 0o700, self.root_owner())?;
            let key_path = self.layout.path(TAILSCALE_KEY_FILE);
            ensure_file(&key_path, 0o600, self.root_owner(), key.expose().as_bytes())?;
            let key_arg = format!("--auth-key=file:{}", key_path.display());
            let mut args = vec!["up", &key_arg, &hostname_arg, "--ssh", "--timeout=120s"];
            // Absent: Tailscale's own control server (the product default).
            let server_arg = plan
                .userdata
                .tailscale_login_server
                .as_ref()
                .map(|url| format!("--login-server={url}"));
            args.extend(server_arg.as_deref());
            let result = self.cmd_ok(bin, &args, scrub);
            let removed = remove_file_if_exists(&key_path);
            result?;
            removed?;
        }
        // TS-2: no operator. `--operator=` clears one an earlier image or
        // run may have set, so `openclaw` cannot change Serve, Funnel,
        // routes or Tailscale SSH; root sets up Serve below instead.
        self.cmd_ok(
            SET_TIMEOUT[0],
            &[
                SET_TIMEOUT[1],
                SET_TIMEOUT[2],
                bin,
                "set",
                "--operator=",
                &hostname_arg,
                "--ssh",
            ],
            scrub,
        )?;
        let serve = if plan.image.serve {
            let port = gateway_port(plan)?;
            let target = format!("http://127.0.0.1:{port}");
            // On a tailnet without HTTPS certificates, `serve` prints a
            // consent URL and waits: bounded, so the error shows the URL
            // and the next boot retries.
            self.cmd_ok(
                SERVE_TIMEOUT[0],
                &[
                    SERVE_TIMEOUT[1],
                    SERVE_TIMEOUT[2],
                    bin,
                    "serve",
                    "--bg",
                    "--yes",
                    "--https=443",
                    &target,
                ],
                scrub,
            )?;
            format!("; Serve (set by root) proxies https:443 on the tailnet to {target}")
        } else {
            "; no Serve (the spec's gateway.tailscale-serve is false)".to_string()
        };
        Ok(format!(
            "{} as `{label}` with Tailscale SSH; no operator{serve}",
            if already {
                "already logged in"
            } else {
                "logged in"
            },
        ))
    }

    /// Whether tailscaled is logged in. A tailscaled that starts with
    /// state (a rebuilt server's, from the state volume) says `NoState` or
    /// `Starting` for a while before `Running`: wait that out (up to
    /// [`TAILSCALE_SETTLE`]) rather than log in again with the auth key
    /// (UPD-2). A fresh one says `NeedsLogin` within a second or two.
    fn tailscale_running(&self, bin: &str) -> bool {
        let deadline = std::time::Instant::now() + TAILSCALE_SETTLE;
        loop {
            let state = self.tailscale_backend_state(bin);
            match state.as_deref() {
                Some("Running") => return true,
                Some("NoState" | "Starting") | None if std::time::Instant::now() < deadline => {
                    std::thread::sleep(TAILSCALE_POLL);
                }
                _ => return false,
            }
        }
    }

    /// tailscaled's `BackendState`; `None` when `tailscale status` fails
    /// or does not answer within [`STATUS_TIMEOUT`] (it never blocks first
    /// boot: CI once saw first boot stop for good in this step).
    fn tailscale_backend_state(&self, bin: &str) -> Option<String> {
        let [timeout, kill, limit] = STATUS_TIMEOUT;
        let out = self
            .runner
            .run(timeout, &[kill, limit, bin, "status", "--json"])
            .ok()?;
        serde_json::from_str::<Value>(&out.stdout)
            .ok()?
            .get("BackendState")?
            .as_str()
            .map(str::to_string)
    }

    fn metadata_firewall(&self) -> Result<String, Error> {
        let added = netfilter::apply(self.runner)?;
        let persisted = self.persist_firewall_unit()?;
        Ok(format!(
            "metadata service {} closed to non-root users and containers, container egress to private ranges closed ({added} rule(s) added); {persisted}",
            netfilter::METADATA_IP
        ))
    }

    /// Installs and enables the boot-time unit unless the image ships it.
    fn persist_firewall_unit(&self) -> Result<&'static str, Error> {
        let name = netfilter::UNIT_NAME;
        let etc_unit = format!("/etc/systemd/system/{name}");
        if self.layout.path(&etc_unit).exists()
            || self
                .layout
                .path(&format!("/usr/lib/systemd/system/{name}"))
                .exists()
        {
            return Ok("the boot-time unit ships with the image");
        }
        let owner = self.root_owner();
        ensure_file(
            &self.layout.path(&etc_unit),
            0o644,
            owner,
            netfilter::unit_text().as_bytes(),
        )?;
        let wants = self.layout.path("/etc/systemd/system/sysinit.target.wants");
        ensure_dir(&wants, 0o755, owner)?;
        let link = wants.join(name);
        if fs::symlink_metadata(&link).is_err() {
            let tmp = temp_path(&link);
            remove_file_if_exists(&tmp)?;
            std::os::unix::fs::symlink(&etc_unit, &tmp).map_err(io_err(&tmp))?;
            fs::rename(&tmp, &link).map_err(io_err(&link))?;
            fsutil::sync_dir(&wants)?;
        }
        Ok("boot-time unit installed and enabled")
    }
}

fn command_line(program: &str, args: &[&str]) -> String {
    let mut s = program.to_string();
    for a in args {
        s.push(' ');
        s.push_str(a);
    }
    s
}

pub(super) fn failed(program: &str, args: &[&str], out: &CmdOutput, scrub: &Scrubber) -> Error {
    let text = if out.stderr.trim().is_empty() {
        &out.stdout
    } else {
        &out.stderr
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(5)..].join(" | ");
    Error::Command {
        command: command_line(program, args),
        status: match out.code {
            Some(c) => format!("exit {c}"),
            None => "killed by a signal".into(),
        },
        detail: if tail.is_empty() {
            String::new()
        } else {
            format!(": {}", scrub.scrub(&tail))
        },
    }
}

pub(super) fn has_swap_signature(path: &Path) -> bool {
    let mut sig = [0u8; 10];
    File::open(path)
        .and_then(|mut f| {
            f.seek(SeekFrom::Start(4096 - 10))?;
            f.read_exact(&mut sig)
        })
        .map(|()| &sig == b"SWAPSPACE2")
        .unwrap_or(false)
}

/// The line first boot adds to `/etc/fstab` for the swap file.
pub(super) const FSTAB_SWAP_LINE: &str = "/swapfile\tnone\tswap\tsw,nofail\t0\t0";

/// `/etc/fstab` with a swap line for [`SWAPFILE`] (unchanged if it has one).
fn fstab_with_swap(fstab: &str) -> String {
    let has = fstab.lines().any(|l| {
        let mut f = l.split_whitespace();
        f.next() == Some(SWAPFILE) && f.nth(1) == Some("swap")
    });
    if has {
        return fstab.to_string();
    }
    let mut s = fstab.to_string();
    if !s.is_empty() && !s.ends_with('\n') {
        s.push('\n');
    }
    s.push_str(FSTAB_SWAP_LINE);
    s.push('\n');
    s
}

/// `/etc/hosts` with its `127.0.1.1` line naming `name`.
fn hosts_with(hosts: &str, name: &str) -> String {
    let line = format!("127.0.1.1\t{name}");
    let mut out = Vec::new();
    let mut found = false;
    for l in hosts.lines() {
        if l.starts_with("127.0.1.1") {
            if !found {
                out.push(line.clone());
            }
            found = true;
        } else {
            out.push(l.to_string());
        }
    }
    if !found {
        let at = out
            .iter()
            .position(|l| l.starts_with("127.0.0.1"))
            .map_or(0, |i| i + 1);
        out.insert(at, line);
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

fn network_text(v6: &Ipv6Config) -> String {
    let addr = format!(
        "Address={}/{}\nGateway={}\n",
        v6.address, v6.prefix, v6.gateway
    );
    match &v6.mac {
        Some(mac) => format!(
            "# Written by openclaw-firstboot from the Hetzner metadata (network-config):\n\
             # the public interface with its static IPv6 (Hetzner sends no router\n\
             # advertisements). Same DHCPv4 settings as 10-wired.network.\n\
             [Match]\n\
             MACAddress={mac}\n\
             \n\
             [Network]\n\
             DHCP=ipv4\n\
             LinkLocalAddressing=ipv6\n\
             IPv6AcceptRA=no\n\
             {addr}\
             \n\
             [DHCPv4]\n\
             UseDomains=yes\n"
        ),
        None => format!(
            "# Written by openclaw-firstboot from the Hetzner metadata (network-config).\n\
             [Network]\n\
             {addr}"
        ),
    }
}

fn ssh_config(ws: &Workspace) -> String {
    let r = &ws.repo;
    let mut s = format!(
        "# Written by openclaw-firstboot (INF-2): the workspace remote goes through\n\
         # this alias, so git offers the deploy key and no other.\n\
         Host {WORKSPACE_HOST_ALIAS}\n\
         \x20   HostName {}\n",
        r.host
    );
    if let Some(u) = &r.user {
        s.push_str(&format!("    User {u}\n"));
    }
    if let Some(p) = r.port {
        s.push_str(&format!("    Port {p}\n"));
    }
    s.push_str(&format!(
        "    IdentityFile ~/{DEPLOY_KEY}\n\
         \x20   IdentitiesOnly yes\n\
         \x20   # ESC-2: only the host keys user-data pinned; never trust on first use.\n\
         \x20   HostKeyAlias {WORKSPACE_HOST_ALIAS}\n\
         \x20   UserKnownHostsFile ~/{KNOWN_HOSTS}\n\
         \x20   GlobalKnownHostsFile /dev/null\n\
         \x20   StrictHostKeyChecking yes\n"
    ));
    s
}

/// The pinned host keys (`workspace-repo-host-key`), under the host alias
/// the SSH config names as `HostKeyAlias`.
fn known_hosts(ws: &Workspace) -> String {
    let mut s =
        "# Written by openclaw-firstboot from `workspace-repo-host-key` (ESC-2).\n".to_string();
    for key in &ws.host_keys {
        s.push_str(&format!("{WORKSPACE_HOST_ALIAS} {key}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fstab_gets_one_swap_line() {
        let base = "UUID=x\t/\text4\tdefaults\t0\t1\n";
        let once = fstab_with_swap(base);
        assert_eq!(once, format!("{base}{FSTAB_SWAP_LINE}\n"));
        assert_eq!(fstab_with_swap(&once), once);
        assert_eq!(fstab_with_swap("a"), format!("a\n{FSTAB_SWAP_LINE}\n"));
    }

    #[test]
    fn hosts_line_is_replaced_or_added() {
        let h = "127.0.0.1\tlocalhost\n127.0.1.1\topenclaw\n::1\tlocalhost\n";
        assert_eq!(
            hosts_with(h, "claw"),
            "127.0.0.1\tlocalhost\n127.0.1.1\tclaw\n::1\tlocalhost\n"
        );
        assert_eq!(
            hosts_with("127.0.0.1 localhost\n", "c"),
            "127.0.0.1 localhost\n127.0.1.1\tc\n"
        );
        assert_eq!(hosts_with("", "c"), "127.0.1.1\tc\n");
    }

    #[test]
    fn merge_keeps_other_keys_and_refuses_non_objects() {
        let mut v = json!({"gateway": {"port": 18789, "auth": {"mode": "token"}}, "x": [1]});
        merge_config(&mut v, &Secret::new("t".repeat(40)), None).unwrap();
        assert_eq!(v["gateway"]["port"], 18789);
        assert_eq!(v["gateway"]["auth"]["mode"], "token");
        assert_eq!(v["gateway"]["remote"]["token"], "t".repeat(40));
        assert_eq!(v["x"], json!([1]));
        let mut bad = json!({"gateway": "loopback"});
        let err = merge_config(&mut bad, &Secret::new("t".repeat(40)), None).unwrap_err();
        assert!(
            err.to_string().contains("`gateway` is not an object"),
            "{err}"
        );
        assert!(!err.to_string().contains("tttt"));
    }

    #[test]
    fn state_round_trips_and_ignores_unknown_steps() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state");
        let s = State {
            completed: vec![Step::HostKeys, Step::Swap],
        };
        s.save(&p, None).unwrap();
        assert_eq!(State::load(&p).unwrap(), s);
        fs::write(&p, r#"{"format":1,"completed":["swap","from-the-future"]}"#).unwrap();
        assert_eq!(State::load(&p).unwrap().completed, vec![Step::Swap]);
    }
}
