//! The first-boot agent (`openclaw-firstboot`): brings secrets in once,
//! leaves nothing behind (SEC-2..5, TS-1, SSH-2, SRV-5, SRV-6, BOOT-2).
//!
//! One run:
//! 1. If the done marker [`DONE_MARKER`] exists, do nothing; without the
//!    image's [`MANIFEST`], refuse (not an appliance).
//! 2. Remove temp files an interrupted run may have left.
//! 3. Read user-data ([`acquire`]: credential, else metadata service) and
//!    the metadata document; validate all of it ([`parse_userdata`]),
//!    inspect the image (Tailscale? OpenSSH? the gateway user), and
//!    compute every file's new content — all before writing anything. Any
//!    problem: fail closed (non-zero exit, no marker, the gateway stays
//!    down, the console names the field).
//! 4. Run the [`Step`]s in order, recording each in the state file
//!    [`STATE_FILE`]; a recorded step is skipped on a later run. Every step
//!    is idempotent, so a power cut anywhere followed by a boot converges
//!    to the same end state (SEC-4).
//! 5. Write the done marker.
//!
//! Every path is joined to [`Layout::root`] and every program goes through
//! a [`Runner`], so the tests run the whole agent in a temp directory as a
//! normal user.

mod fsutil;
mod host;
mod metadata;
mod netfilter;
mod secret;
mod source;
mod steps;
mod unit;
mod userdata;
mod volume;

#[cfg(test)]
mod tests;

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde_json::Value;
use thiserror::Error;

pub use fsutil::{Owner, ensure_file, temp_path, write_atomic_with};
pub use host::{CmdOutput, Level, Log, Runner, StderrLog, SystemRunner};
pub use metadata::{Ipv6Config, Metadata, parse as parse_metadata};
pub use netfilter::{
    METADATA_IP, SANDBOX_UID, UNIT_NAME as METADATA_FIREWALL_UNIT,
    apply as apply_metadata_firewall, unit_text as metadata_firewall_unit_text,
};
pub use secret::{Scrubber, Secret};
pub use source::{
    Acquired, CREDENTIAL_METADATA, CREDENTIAL_METADATA_URL, CREDENTIAL_USERDATA,
    DEFAULT_METADATA_URL, FetchPolicy, METADATA_URL_ENV, Source, acquire,
};
pub use steps::Step;
pub use unit::unit_text;
pub use userdata::{
    FIELDS, FIRST_LINE as USERDATA_FIRST_LINE, FieldProblem, GitRemote, Telegram, UserData,
    UserDataError, WORKSPACE_HOST_ALIAS, Workspace, parse as parse_userdata,
};
pub use volume::{
    BY_ID_PREFIX, Durable, IMAGE_CONFIG_COPY, LABEL as VOLUME_LABEL, MARKER as VOLUME_MARKER,
    MOUNT_POINT as VOLUME_MOUNT_POINT, NO_VOLUME_WARNING, RECORD as VOLUME_RECORD,
    ROOT_RECORD as VOLUME_ROOT_RECORD, VOLUME_UNIT, VolumeOutcome, durable, is_bind_of,
    requires_dropin as volume_requires_dropin, unit_text as volume_unit_text,
};

/// Where the image installs this binary.
pub const BINARY_PATH: &str = "/usr/local/sbin/openclaw-firstboot";
/// The agent's state directory (0755: the gateway's user manager must be
/// able to see the done marker in it).
pub const STATE_DIR: &str = "/var/lib/openclaw-appliance";
/// Written when first boot has completed (SEC-4). Same path as the
/// gateway unit's `ConditionPathExists=` (checked by a test).
pub const DONE_MARKER: &str = "/var/lib/openclaw-appliance/firstboot.done";
/// Which steps have completed (JSON, no secret).
pub const STATE_FILE: &str = "/var/lib/openclaw-appliance/firstboot.state";
/// The build manifest, for `tailscale.present`.
pub const MANIFEST: &str = "/usr/share/openclaw-appliance/manifest.json";
/// Runtime directory (tmpfs, 0700) for the Tailscale auth key file.
pub const RUN_DIR: &str = "/run/openclaw-firstboot";
/// The Tailscale auth key, for the length of one `tailscale up`.
pub const TAILSCALE_KEY_FILE: &str = "/run/openclaw-firstboot/tailscale-auth-key";
/// The swap file (SRV-6); first boot also adds it to `/etc/fstab`.
pub const SWAPFILE: &str = "/swapfile";
/// Largest swap file: min(2 GiB, a quarter of the root filesystem).
pub const SWAP_MAX_BYTES: u64 = 2 << 30;
/// The gateway user's config, relative to their home.
pub const OPENCLAW_JSON: &str = ".openclaw/openclaw.json";
/// Provider auth for the gateway (`ANTHROPIC_OAUTH_TOKEN`), relative to home.
pub const PROVIDER_ENV: &str = ".openclaw/.env";
/// The workspace deploy key, relative to home (INF-2).
pub const DEPLOY_KEY: &str = ".ssh/workspace-deploy-key";
/// The SSH client config with the workspace host alias, relative to home.
pub const SSH_CONFIG: &str = ".ssh/config";
/// The workspace remote's pinned host keys (`workspace-repo-host-key`),
/// relative to home: the only known_hosts the sync's ssh reads (ESC-2).
pub const KNOWN_HOSTS: &str = ".ssh/workspace-known-hosts";
/// `authorized_keys` (only when the image has an OpenSSH server).
pub const AUTHORIZED_KEYS: &str = ".ssh/authorized_keys";
/// The workspace remote rewritten to the host alias, for the sync job.
pub const WORKSPACE_REPO: &str = ".config/openclaw-appliance/workspace-repo";

/// Everything that can stop first boot.
#[derive(Debug, Error)]
pub enum Error {
    /// No user-data could be read.
    #[error("no user-data: {0}")]
    NoUserData(String),
    /// User-data was read but is not valid.
    #[error(transparent)]
    UserData(#[from] UserDataError),
    /// A file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What happened.
        source: io::Error,
    },
    /// A program failed.
    #[error("`{command}` failed ({status}){detail}")]
    Command {
        /// The command (never holds a secret: none goes on argv).
        command: String,
        /// Exit status.
        status: String,
        /// Tail of its stderr, scrubbed of every known secret.
        detail: String,
    },
    /// The image or the environment is not what the agent expects.
    #[error("{0}")]
    Invalid(String),
    /// A step failed.
    #[error("step `{step}`: {source}")]
    Step {
        /// The step's name.
        step: &'static str,
        /// Why.
        source: Box<Error>,
    },
}

impl Error {
    /// The process exit code: 2 when user-data is missing or invalid (the
    /// operator must fix it), 1 for any other failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::NoUserData(_) | Error::UserData(_) => 2,
            Error::Step { source, .. } => source.exit_code(),
            _ => 1,
        }
    }

    /// The lines the console and the journal show for this failure: one per
    /// problem, then what it means and how to retry. Never a secret value.
    pub fn report(&self) -> Vec<String> {
        let mut lines = Vec::new();
        match self {
            Error::UserData(e) => {
                for p in &e.problems {
                    lines.push(p.to_string());
                }
            }
            other => lines.push(other.to_string()),
        }
        if self.exit_code() == 2 {
            lines.push(
                "first boot FAILED, nothing was written: the OpenClaw gateway stays down until \
                 first boot completes (`journalctl -u openclaw-firstboot`)"
                    .into(),
            );
            lines.push(
                "to retry: fix the user-data (Hetzner: rebuild the server with it; QEMU: the \
                 `openclaw.userdata` credential) and boot again — docs/first-boot.md"
                    .into(),
            );
        } else {
            lines.push(format!(
                "first boot FAILED: the OpenClaw gateway stays down until first boot completes; \
                 finished steps are recorded in {STATE_FILE} and the next run resumes after them \
                 (`journalctl -u openclaw-firstboot`)"
            ));
            lines.push(
                "to retry: fix the cause and reboot, or run `systemctl start openclaw-firstboot` \
                 — docs/first-boot.md"
                    .into(),
            );
        }
        lines
    }
}

/// Where a test cuts the power: after step `n` (0-based) has done its work,
/// before or after the state file records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    #[cfg_attr(not(test), allow(dead_code))]
    BeforeRecord(usize),
    #[cfg_attr(not(test), allow(dead_code))]
    AfterRecord(usize),
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The done marker was already there; nothing was read or written.
    AlreadyDone,
    /// First boot completed now.
    Completed,
}

/// Where the agent works: a root directory prefix and the gateway user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Prefix for every absolute path (`/` on the machine).
    pub root: PathBuf,
    /// The gateway user; uid, gid and home come from `<root>/etc/passwd`.
    pub user: String,
    /// Whether to chown what is written (false in unprivileged tests).
    pub set_owner: bool,
    /// Randomness for a generated gateway token.
    pub urandom: PathBuf,
}

impl Layout {
    /// The real machine: `/`, user `openclaw`, owners set, `/dev/urandom`.
    pub fn system() -> Self {
        Layout {
            root: PathBuf::from("/"),
            user: "openclaw".into(),
            set_owner: true,
            urandom: PathBuf::from("/dev/urandom"),
        }
    }

    /// An absolute image path under the root.
    pub fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    fn is_real_root(&self) -> bool {
        self.root == Path::new("/")
    }
}

/// The gateway user as `/etc/passwd` says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UserInfo {
    name: String,
    uid: u32,
    gid: u32,
    /// Absolute path in the image.
    home: String,
}

/// What the image has, read before anything is written.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Image {
    user: UserInfo,
    /// The `tailscale` binary (image path), when the image has Tailscale.
    tailscale: Option<String>,
    /// Whether root points Tailscale Serve at the gateway (the spec's
    /// `gateway.tailscale-serve`, in the manifest); absent means yes.
    serve: bool,
    /// Whether an OpenSSH server is installed.
    sshd: bool,
    /// The image's own host name (`/etc/hostname`).
    default_hostname: String,
}

/// Everything the steps need, computed and validated before the first write.
#[derive(Debug)]
struct Plan {
    userdata: UserData,
    metadata: Metadata,
    image: Image,
    /// The gateway token: from user-data, from an interrupted earlier run,
    /// or freshly generated.
    gateway_token: Secret,
    token_origin: &'static str,
    /// The host name to set, if any source gives one.
    hostname: Option<String>,
    /// The new `openclaw.json`.
    openclaw_json: Secret,
}

/// The agent: a layout, where its inputs come from, and how it touches the
/// machine.
pub struct Agent<'a> {
    /// Paths.
    pub layout: Layout,
    /// `$CREDENTIALS_DIRECTORY`, if systemd set it.
    pub credentials_dir: Option<PathBuf>,
    /// Metadata service base URL override (`OPENCLAW_METADATA_URL`).
    pub metadata_url: Option<String>,
    /// Retries and timeouts for the metadata service.
    pub fetch: FetchPolicy,
    /// Runs programs.
    pub runner: &'a dyn Runner,
    /// Writes progress.
    pub log: &'a dyn Log,
}

impl Agent<'_> {
    /// Runs first boot (see the module docs).
    pub fn run(&self) -> Result<Outcome, Error> {
        self.run_until(None)
    }

    /// Runs, stopping with an error at `cut` (the tests' power cut).
    fn run_until(&self, cut: Option<Cut>) -> Result<Outcome, Error> {
        let done = self.layout.path(DONE_MARKER);
        if done.exists() {
            self.log.info(&format!(
                "first boot already completed ({DONE_MARKER} exists); nothing to do"
            ));
            return Ok(Outcome::AlreadyDone);
        }
        // A safety catch: on anything but the appliance (a developer's
        // machine), refuse before touching anything.
        if !self.layout.path(MANIFEST).exists() {
            return Err(Error::Invalid(format!(
                "{MANIFEST} not found: this is not an OpenClaw appliance image; refusing to run"
            )));
        }
        self.remove_leftovers()?;

        let acquired = acquire(
            self.credentials_dir.as_deref(),
            self.metadata_url.as_deref(),
            &self.fetch,
            self.log,
        )?;
        self.log
            .info(&format!("user-data: read from the {}", acquired.source));
        let userdata = parse_userdata(acquired.userdata.expose())?;
        let metadata = acquired
            .metadata
            .as_deref()
            .map(metadata::parse)
            .unwrap_or_default();
        for w in &metadata.warnings {
            self.log.warn(w);
        }
        let plan = self.plan(userdata, metadata)?;
        let mut scrubber = Scrubber::default();
        for s in plan.secrets() {
            scrubber.add(s);
        }
        self.log.info("user-data is valid; applying first boot");

        let state_path = self.layout.path(STATE_FILE);
        fsutil::ensure_dir(&self.layout.path(STATE_DIR), 0o755, self.root_owner())?;
        let mut state = steps::State::load(&state_path)?;
        for (i, step) in Step::ALL.iter().enumerate() {
            if state.completed.contains(step) {
                self.log.info(&format!(
                    "step {}: already done by an earlier run",
                    step.name()
                ));
            } else {
                let note = self
                    .step(*step, &plan, &scrubber)
                    .map_err(|e| Error::Step {
                        step: step.name(),
                        source: Box::new(e),
                    })?;
                self.log.info(&format!("step {}: {note}", step.name()));
                if cut == Some(Cut::BeforeRecord(i)) {
                    return Err(Error::Invalid(format!(
                        "simulated power cut after step {i}, before its record"
                    )));
                }
                state.completed.push(*step);
                state.save(&state_path, self.root_owner())?;
            }
            if cut == Some(Cut::AfterRecord(i)) {
                return Err(Error::Invalid(format!(
                    "simulated power cut after step {i}"
                )));
            }
        }
        self.record_first_boot(plan.token_origin)?;
        fsutil::ensure_file(&done, 0o644, self.root_owner(), b"first boot completed\n")?;
        self.log.info(&format!(
            "first boot completed ({DONE_MARKER} written); the gateway may start"
        ));
        Ok(Outcome::Completed)
    }

    fn root_owner(&self) -> Owner {
        self.layout.set_owner.then_some((0, 0))
    }

    fn user_owner(&self, user: &UserInfo) -> Owner {
        self.layout.set_owner.then_some((user.uid, user.gid))
    }

    fn home_path(&self, user: &UserInfo, rel: &str) -> PathBuf {
        self.layout
            .path(&format!("{}/{rel}", user.home.trim_end_matches('/')))
    }

    /// Every file an interrupted run may have left half-written: stale temp
    /// files of each destination and the Tailscale key file.
    fn remove_leftovers(&self) -> Result<(), Error> {
        let mut abs: Vec<String> = vec![
            STATE_FILE.into(),
            DONE_MARKER.into(),
            SWAPFILE.into(),
            "/etc/fstab".into(),
            "/etc/hostname".into(),
            "/etc/hosts".into(),
            steps::NETWORK_FILE.into(),
            steps::NETWORK_DROPIN.into(),
            TAILSCALE_KEY_FILE.into(),
            format!("/etc/systemd/system/{}", netfilter::UNIT_NAME),
            format!(
                "/etc/systemd/system/sysinit.target.wants/{}",
                netfilter::UNIT_NAME
            ),
        ];
        if let Ok(user) = self.user_info() {
            for rel in [
                OPENCLAW_JSON,
                PROVIDER_ENV,
                DEPLOY_KEY,
                SSH_CONFIG,
                KNOWN_HOSTS,
                AUTHORIZED_KEYS,
                WORKSPACE_REPO,
            ] {
                abs.push(format!("{}/{rel}", user.home.trim_end_matches('/')));
            }
        }
        for a in &abs {
            let p = self.layout.path(a);
            if fsutil::remove_stale_temp(&p)? {
                self.log.info(&format!(
                    "removed {} left by an interrupted run",
                    temp_path(Path::new(a)).display()
                ));
            }
        }
        if fsutil::remove_file_if_exists(&self.layout.path(TAILSCALE_KEY_FILE))? {
            self.log.info(&format!(
                "removed {TAILSCALE_KEY_FILE} left by an interrupted run"
            ));
        }
        Ok(())
    }

    fn user_info(&self) -> Result<UserInfo, Error> {
        let passwd = self.layout.path("/etc/passwd");
        let text = fs::read_to_string(&passwd).map_err(fsutil::io_err(&passwd))?;
        for line in text.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() >= 7 && f[0] == self.layout.user {
                let (Ok(uid), Ok(gid)) = (f[2].parse(), f[3].parse()) else {
                    break;
                };
                return Ok(UserInfo {
                    name: f[0].to_string(),
                    uid,
                    gid,
                    home: f[5].to_string(),
                });
            }
        }
        Err(Error::Invalid(format!(
            "user `{}` not found in /etc/passwd: this is not an OpenClaw appliance image",
            self.layout.user
        )))
    }

    fn inspect_image(&self) -> Result<Image, Error> {
        let user = self.user_info()?;
        let manifest = fs::read_to_string(self.layout.path(MANIFEST))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok());
        let manifest_says = |key: &str| {
            manifest
                .as_ref()
                .and_then(|v| v.get("tailscale")?.get(key)?.as_bool())
        };
        let binary = ["/usr/bin/tailscale", "/usr/local/bin/tailscale"]
            .into_iter()
            .find(|b| self.layout.path(b).exists())
            .map(str::to_string);
        let tailscale = match (manifest_says("present"), binary) {
            (Some(false), _) => None,
            (Some(true), None) => {
                return Err(Error::Invalid(format!(
                    "{MANIFEST} says Tailscale is present but no tailscale binary is installed"
                )));
            }
            (_, b) => b,
        };
        let default_hostname = fs::read_to_string(self.layout.path("/etc/hostname"))
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "openclaw".into());
        Ok(Image {
            user,
            tailscale,
            serve: manifest_says("serve").unwrap_or(true),
            sshd: self.layout.path("/usr/sbin/sshd").exists(),
            default_hostname,
        })
    }

    /// Validates what depends on the image and computes every new file
    /// content. Writes nothing.
    fn plan(&self, userdata: UserData, metadata: Metadata) -> Result<Plan, Error> {
        let image = self.inspect_image()?;
        if image.tailscale.is_some() && userdata.tailscale_auth_key.is_none() {
            return Err(Error::UserData(UserDataError {
                problems: vec![FieldProblem {
                    field: "tailscale-auth-key".into(),
                    problem: "missing (required: this image has Tailscale, and the appliance is reached only through it)".into(),
                }],
            }));
        }
        let config_path = self.home_path(&image.user, OPENCLAW_JSON);
        let text = fs::read_to_string(&config_path).map_err(fsutil::io_err(&config_path))?;
        let mut config: Value = serde_json::from_str(&text).map_err(|e| {
            Error::Invalid(format!(
                "{}: not plain JSON (line {}): the image's openclaw.json must be JSON",
                config_path.display(),
                e.line()
            ))
        })?;
        // A rebuilt server: the state volume's config is the base, and the
        // new image's own keys win, leaf by leaf (docs/first-boot.md).
        let image_copy = self.layout.path(IMAGE_CONFIG_COPY);
        let rebuilt = match fs::read_to_string(&image_copy) {
            Ok(t) => {
                let image_config: Value = serde_json::from_str(&t).map_err(|e| {
                    Error::Invalid(format!(
                        "{}: not JSON (line {})",
                        image_copy.display(),
                        e.line()
                    ))
                })?;
                volume::overlay(&mut config, &image_config);
                // Rebuilt: an earlier root disk completed first boot on
                // this volume (not a first boot interrupted on a new one).
                self.volume_has_completed_first_boot()
            }
            Err(_) => false,
        };
        let (gateway_token, token_origin) = match &userdata.gateway_token {
            Some(t) => (t.clone(), "from user-data"),
            None => match config
                .pointer("/gateway/auth/token")
                .and_then(Value::as_str)
                .filter(|t| t.chars().count() >= userdata::GATEWAY_TOKEN_MIN)
            {
                Some(t) if rebuilt => (Secret::new(t), "kept from the state volume"),
                Some(t) => (Secret::new(t), "kept from an interrupted earlier run"),
                None => (self.generate_token()?, "generated"),
            },
        };
        steps::merge_config(&mut config, &gateway_token, userdata.telegram.as_ref())?;
        let mut json = serde_json::to_string_pretty(&config)
            .map_err(|e| Error::Invalid(format!("openclaw.json: {e}")))?;
        json.push('\n');
        let hostname = userdata
            .hostname
            .clone()
            .or_else(|| metadata.hostname.clone());
        Ok(Plan {
            userdata,
            metadata,
            image,
            gateway_token,
            token_origin,
            hostname,
            openclaw_json: Secret::new(json),
        })
    }

    /// 32 random bytes as 64 hex characters.
    fn generate_token(&self) -> Result<Secret, Error> {
        let mut buf = [0u8; 32];
        fs::File::open(&self.layout.urandom)
            .and_then(|mut f| f.read_exact(&mut buf))
            .map_err(fsutil::io_err(&self.layout.urandom))?;
        let hex: String = buf.iter().map(|b| format!("{b:02x}")).collect();
        buf.fill(0);
        Ok(Secret::new(hex))
    }
}

impl Plan {
    fn secrets(&self) -> Vec<&Secret> {
        let u = &self.userdata;
        let mut v = vec![&self.gateway_token, &u.anthropic_setup_token];
        v.extend(u.tailscale_auth_key.as_ref());
        v.extend(u.telegram.as_ref().map(|t| &t.bot_token));
        v.extend(u.workspace.as_ref().map(|w| &w.deploy_key));
        v
    }
}
