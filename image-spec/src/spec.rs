//! `image.toml`: what goes into the appliance image.
//!
//! Parsing happens in two steps, as in mkosi: serde reads the raw text
//! (unknown keys are rejected), then [`Spec::parse`] validates every value
//! into an immutable [`Spec`]. Each error names the file, line and column,
//! the field and the fix.

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::error::SpecError;
use crate::semver::Version;

/// Groups whose members can become root (ESC-1): a container daemon's
/// socket, sudo, the disks, the logs of secrets, lxd, … — refused in
/// `users.groups`.
pub const ROOT_GROUPS: [&str; 9] = [
    "docker",
    "sudo",
    "admin",
    "wheel",
    "adm",
    "disk",
    "lxd",
    "incus-admin",
    "shadow",
];

/// CPU architecture of the image, in Debian's naming.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// x86-64 (Hetzner cx/cpx/ccx types).
    Amd64,
    /// AArch64 (Hetzner cax types). Representable, not built yet.
    Arm64,
}

impl Arch {
    /// Debian's name (`amd64`).
    pub fn debian(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }
    /// Node's name (`x64`).
    pub fn node(self) -> &'static str {
        match self {
            Arch::Amd64 => "x64",
            Arch::Arm64 => "arm64",
        }
    }
}

/// The validated spec. Immutable: build stages read it, nothing changes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Spec {
    /// `[image]`
    pub image: Image,
    /// `[debian]`
    pub debian: Debian,
    /// `[packages]`
    pub packages: Packages,
    /// `[[users]]`
    pub users: Vec<User>,
    /// `[openclaw]`
    pub openclaw: OpenClaw,
    /// `[node]`
    pub node: Node,
    /// `[tailscale]`
    pub tailscale: Tailscale,
    /// `[features]`
    pub features: Features,
    /// `[gateway]`
    pub gateway: Gateway,
    /// `[sandbox]`
    pub sandbox: Sandbox,
}

/// `[image]`: identity and disk geometry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Image {
    /// File stem of the image (`target/image/<name>.raw`).
    pub name: String,
    /// Default hostname (user-data may override it at first boot).
    pub hostname: String,
    /// CPU architecture.
    pub architecture: Arch,
    /// Raw disk size in MiB; the root filesystem grows at first boot.
    pub disk_size_mib: u64,
    /// Timestamp written into every file and filesystem (`SOURCE_DATE_EPOCH`).
    pub source_date_epoch: u64,
}

/// `[debian]`: where packages come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Debian {
    /// Suites, base first (`trixie`, `trixie-updates`, `trixie-security`).
    pub suites: Vec<String>,
    /// Archive components (`main`).
    pub components: Vec<String>,
    /// Mirror of the Debian archive; `None`: read from the host's apt configuration.
    pub mirror: Option<String>,
    /// Mirror of the security archive; `None`: read from the host's apt configuration.
    pub security_mirror: Option<String>,
}

/// `[packages]`: the roots of the three Debian closures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Packages {
    /// Installed into the appliance's root filesystem.
    pub host: Vec<String>,
    /// Installed into the sandbox container image.
    pub sandbox: Vec<String>,
    /// The tools tree that builds the disk (mke2fs, mtools, GRUB…).
    pub tools: Vec<String>,
}

/// `[[users]]`: a local account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct User {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id (group named like the user).
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<String>,
    /// Whether systemd keeps the user's manager running without a login.
    pub linger: bool,
}

/// `[openclaw]`: the gateway package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct OpenClaw {
    /// Exact npm version of `openclaw`.
    pub version: String,
    /// Plugins, `name@exact-version`; they also go to `plugins.allow` (SUP-2).
    pub plugins: Vec<String>,
    /// The agents' default model, `provider/model` (`agents.defaults.model.primary`);
    /// `None` leaves OpenClaw's own default.
    pub model: Option<String>,
}

/// `[node]`: the Node runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Node {
    /// Exact version; must satisfy OpenClaw's `engines.node` (checked by `lock`).
    pub version: Version,
}

/// `[tailscale]`: which Tailscale, and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Tailscale {
    /// Exact version (`1.102.5`; the Go module's is `v1.102.5`).
    pub version: String,
    /// Where the binaries come from.
    #[serde(flatten)]
    pub source: TailscaleSource,
}

impl Tailscale {
    /// The Go module version of a source build (`v1.102.5`).
    pub fn module_version(&self) -> String {
        format!("v{}", self.version)
    }
}

/// The Go module Tailscale's client is built from.
pub const TAILSCALE_MODULE: &str = "tailscale.com";

/// `tailscale.source`: how the image gets `tailscale` and `tailscaled`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "source", rename_all = "kebab-case")]
pub enum TailscaleSource {
    /// Built from the Go module `tailscale.com` (default): every module of
    /// the build pinned by its `h1:` hash in the lock, compiled offline.
    Module,
    /// Tailscale's official static tarball, pinned by URL and sha256.
    Tarball {
        /// Download URL of `tailscale_<version>_<arch>.tgz`.
        url: String,
        /// sha256 of the tarball.
        sha256: String,
    },
}

/// The Debian package `features.openssh` adds to `packages.host`.
pub const OPENSSH_PACKAGE: &str = "openssh-server";

/// `[features]`: switches for optional, security-relevant parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Features {
    /// Ship an OpenSSH server (hardened per SSH-1). Default off: admin access is Tailscale SSH.
    pub openssh: bool,
    /// Allow OpenClaw's node exec (NODE-1). Default off.
    pub node_exec: bool,
    /// Allow OpenClaw's elevated tools (AGT-1). Default off.
    pub elevated_tools: bool,
}

/// Where the gateway binds (OpenClaw's `gateway.bind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bind {
    /// 127.0.0.1 and ::1 only (NET-3).
    Loopback,
    /// Every interface. Breaks NET-3; only for proving vm-test can fail.
    Lan,
    /// The tailnet address.
    Tailnet,
}

/// `[gateway]`: OpenClaw gateway settings baked into `openclaw.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Gateway {
    /// TCP port (NET-6: 18789).
    pub port: u16,
    /// Bind mode (NET-3, NET-6: loopback).
    pub bind: Bind,
    /// Accept Tailscale identity headers from Serve (NET-6).
    pub allow_tailscale: bool,
    /// Proxies whose forwarded headers are trusted (NET-6).
    pub trusted_proxies: Vec<String>,
    /// Whether Serve fronts the gateway when Tailscale is in the image (NET-6, NET-8).
    pub tailscale_serve: bool,
    /// Firewall: enable UFW with deny-incoming (NET-1). Off only to prove vm-test can fail.
    pub firewall: bool,
}

/// `[sandbox]`: the agent sandbox (AGT-1..6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Sandbox {
    /// Image reference the gateway uses.
    pub image: String,
    /// Docker network of sandbox containers.
    pub network: String,
    /// Workspace access (`rw`).
    pub workspace_access: String,
    /// Read-only root filesystem of sandbox containers.
    pub read_only_root: bool,
    /// Most processes and threads in one sandbox container (ESC-3).
    pub pids_limit: u32,
    /// Memory limit of one sandbox container, in Docker's notation (`1g`);
    /// swap is the same, so none (ESC-3).
    pub memory: String,
    /// CPUs one sandbox container may use (ESC-3).
    pub cpus: u32,
}

// ---------------------------------------------------------------------------
// Raw forms, as written in the file.

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawSpec {
    image: RawImage,
    debian: RawDebian,
    packages: RawPackages,
    users: Vec<RawUser>,
    openclaw: RawOpenClaw,
    node: RawNode,
    tailscale: RawTailscale,
    #[serde(default)]
    features: RawFeatures,
    gateway: RawGateway,
    sandbox: RawSandbox,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawImage {
    name: Spanned<String>,
    hostname: Spanned<String>,
    architecture: Arch,
    disk_size_mib: Spanned<u64>,
    source_date_epoch: Spanned<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawDebian {
    suites: Spanned<Vec<String>>,
    components: Spanned<Vec<String>>,
    mirror: Option<Spanned<String>>,
    security_mirror: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawPackages {
    host: Spanned<Vec<String>>,
    sandbox: Spanned<Vec<String>>,
    tools: Spanned<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawUser {
    name: Spanned<String>,
    uid: u32,
    gid: u32,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    linger: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawOpenClaw {
    version: Spanned<String>,
    #[serde(default)]
    plugins: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    model: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawNode {
    version: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawTailscale {
    version: Spanned<String>,
    #[serde(default)]
    source: Option<Spanned<String>>,
    #[serde(default)]
    url: Option<Spanned<String>>,
    #[serde(default)]
    sha256: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawFeatures {
    #[serde(default)]
    openssh: bool,
    #[serde(default)]
    node_exec: bool,
    #[serde(default)]
    elevated_tools: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawGateway {
    port: Spanned<u16>,
    bind: Bind,
    allow_tailscale: bool,
    trusted_proxies: Spanned<Vec<String>>,
    tailscale_serve: bool,
    #[serde(default = "yes")]
    firewall: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawSandbox {
    image: Spanned<String>,
    network: Spanned<String>,
    workspace_access: Spanned<String>,
    read_only_root: bool,
    #[serde(default = "default_pids_limit")]
    pids_limit: Spanned<u32>,
    #[serde(default = "default_memory")]
    memory: Spanned<String>,
    #[serde(default = "default_cpus")]
    cpus: Spanned<u32>,
}

/// OpenClaw's own per-container default for its fleet cells: room for a
/// build's compilers and Node's worker threads, far below what starves
/// the host.
fn default_pids_limit() -> Spanned<u32> {
    Spanned::new(0..0, 512)
}

/// A quarter of a small VPS's 4 GB: a sandbox hogging memory is killed
/// inside its own cgroup while the gateway and the host keep theirs.
fn default_memory() -> Spanned<String> {
    Spanned::new(0..0, "1g".into())
}

/// One of a small VPS's two vCPUs: a busy sandbox leaves the other to the
/// gateway and the host.
fn default_cpus() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}

/// Validation context: the file name and text, to locate spans.
struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
}

impl Ctx<'_> {
    fn err<T>(
        &self,
        spanned: &Spanned<T>,
        field: &str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> SpecError {
        SpecError::at(
            self.file,
            self.text,
            Some(spanned.span()),
            Some(field),
            message,
            fix,
        )
    }
}

impl Spec {
    /// Parses and validates `text`, read from `file` (used in errors only).
    pub fn parse(file: &str, text: &str) -> Result<Spec, SpecError> {
        let raw: RawSpec = toml::from_str(text).map_err(|e| {
            let message = e.message().trim().to_string();
            let fix = if message.starts_with("unknown field") {
                "remove the key or correct its spelling; docs/image-spec.md lists every key"
            } else if message.starts_with("missing field") {
                "add the key; docs/image-spec.md lists every key with its meaning"
            } else {
                "correct the value; docs/image-spec.md lists every key with its type"
            };
            let field = field_at(text, e.span(), &message);
            SpecError::at(file, text, e.span(), field.as_deref(), message, fix)
        })?;
        Ctx { file, text }.validate(raw)
    }

    /// The user that runs the gateway (the first `[[users]]` entry).
    pub fn gateway_user(&self) -> &User {
        // `validate` guarantees at least one user.
        &self.users[0]
    }
}

/// Best effort: the dotted key path at `span`, from the enclosing table
/// header and the key on that line (or the key a "missing field" names).
fn field_at(text: &str, span: Option<std::ops::Range<usize>>, message: &str) -> Option<String> {
    let start = span?.start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let header = |l: &str| {
        let l = l.trim();
        l.strip_prefix("[[")
            .and_then(|r| r.strip_suffix("]]"))
            .or_else(|| l.strip_prefix('[').and_then(|r| r.strip_suffix(']')))
            .map(str::to_string)
    };
    let line = text[line_start..].lines().next().unwrap_or("");
    let (table, key) = match header(line) {
        // The error is about a table as a whole (unknown or incomplete table).
        Some(h) => {
            let missing = message
                .strip_prefix("missing field `")
                .and_then(|r| r.split('`').next())
                .map(str::to_string);
            match (h.split_once('.'), missing) {
                (_, Some(m)) => (Some(h), Some(m)),
                (Some((parent, child)), None) => {
                    (Some(parent.to_string()), Some(child.to_string()))
                }
                (None, None) => (None, Some(h)),
            }
        }
        None => {
            let table = text[..line_start].lines().rev().find_map(header);
            let key = line
                .split_once('=')
                .map(|(k, _)| k.trim().to_string())
                .filter(|k| !k.is_empty());
            (table, key)
        }
    };
    match (table, key) {
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (Some(t), None) => Some(t),
        (None, k) => k,
    }
}

fn is_debian_package_name(name: &str) -> bool {
    name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

fn is_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// An npm version such as `2026.9.6` or `1.2.3-beta.1`.
fn is_exact_npm_version(v: &str) -> bool {
    let core = v.split(['-', '+']).next().unwrap_or("");
    core.parse::<Version>().is_ok()
}

impl Ctx<'_> {
    fn validate(&self, raw: RawSpec) -> Result<Spec, SpecError> {
        let image = self.image(raw.image)?;
        let debian = self.debian(raw.debian)?;
        let mut host = self.package_list(raw.packages.host, "packages.host")?;
        // `features.openssh` ships the server (SSH-1); its package is part
        // of the host set, so the lock pins it like any other.
        if raw.features.openssh && !host.iter().any(|p| p == OPENSSH_PACKAGE) {
            host.push(OPENSSH_PACKAGE.to_string());
        }
        let packages = Packages {
            host,
            sandbox: self.package_list(raw.packages.sandbox, "packages.sandbox")?,
            tools: self.package_list(raw.packages.tools, "packages.tools")?,
        };
        let users = self.users(raw.users)?;
        let openclaw = self.openclaw(raw.openclaw)?;
        let node = self.node(raw.node)?;
        let tailscale = self.tailscale(raw.tailscale, image.architecture)?;
        let f = raw.features;
        let features = Features {
            openssh: f.openssh,
            node_exec: f.node_exec,
            elevated_tools: f.elevated_tools,
        };
        let gateway = self.gateway(raw.gateway)?;
        let sandbox = self.sandbox(raw.sandbox)?;
        Ok(Spec {
            image,
            debian,
            packages,
            users,
            openclaw,
            node,
            tailscale,
            features,
            gateway,
            sandbox,
        })
    }

    fn image(&self, raw: RawImage) -> Result<Image, SpecError> {
        let name = raw.name.get_ref();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            || name.starts_with('.')
        {
            return Err(self.err(
                &raw.name,
                "image.name",
                format!("`{name}` is not a usable file name"),
                "use letters, digits, `-`, `_` and `.`, e.g. \"openclaw-appliance\"",
            ));
        }
        if !is_hostname(raw.hostname.get_ref()) {
            return Err(self.err(
                &raw.hostname,
                "image.hostname",
                format!("`{}` is not a valid hostname", raw.hostname.get_ref()),
                "use 1-63 lowercase letters, digits and inner `-`, e.g. \"openclaw\"",
            ));
        }
        let size = *raw.disk_size_mib.get_ref();
        if !(2048..=1_048_576).contains(&size) {
            return Err(self.err(
                &raw.disk_size_mib,
                "image.disk-size-mib",
                format!("{size} MiB is outside 2048..=1048576"),
                "give the raw disk size in MiB, at least 2048 (the root grows at first boot)",
            ));
        }
        let epoch = *raw.source_date_epoch.get_ref();
        // 2000-01-01 .. 2100-01-01: catches milliseconds and typos.
        if !(946_684_800..4_102_444_800).contains(&epoch) {
            return Err(self.err(
                &raw.source_date_epoch,
                "image.source-date-epoch",
                format!("{epoch} is not a plausible Unix time in seconds"),
                "give seconds since 1970, e.g. the date of the lock: `date +%s`",
            ));
        }
        Ok(Image {
            name: raw.name.into_inner(),
            hostname: raw.hostname.into_inner(),
            architecture: raw.architecture,
            disk_size_mib: size,
            source_date_epoch: epoch,
        })
    }

    fn debian(&self, raw: RawDebian) -> Result<Debian, SpecError> {
        let suites = raw.suites.get_ref();
        let base = suites.first().cloned().unwrap_or_default();
        if base.is_empty() || base.contains('-') {
            return Err(self.err(
                &raw.suites,
                "debian.suites",
                "the first suite must be the base suite",
                "list the base suite first: [\"trixie\", \"trixie-updates\", \"trixie-security\"]",
            ));
        }
        for s in suites {
            if !(s == &base || s.strip_prefix(&base).is_some_and(|r| r.starts_with('-'))) {
                return Err(self.err(
                    &raw.suites,
                    "debian.suites",
                    format!("suite `{s}` does not belong to base suite `{base}`"),
                    format!("use `{base}` and its `{base}-updates`/`{base}-security` suites"),
                ));
            }
        }
        if raw.components.get_ref().is_empty() {
            return Err(self.err(
                &raw.components,
                "debian.components",
                "no component given",
                "list at least [\"main\"]",
            ));
        }
        let mirror = |m: Option<Spanned<String>>, field: &str| -> Result<_, SpecError> {
            match m {
                None => Ok(None),
                Some(m)
                    if m.get_ref().starts_with("http://")
                        || m.get_ref().starts_with("https://")
                        || m.get_ref().starts_with("file://") =>
                {
                    Ok(Some(m.into_inner().trim_end_matches('/').to_string()))
                }
                Some(m) => Err(self.err(
                    &m,
                    field,
                    format!("`{}` is not an http(s) or file URL", m.get_ref()),
                    "give the archive root URL, or remove the key to use the host's apt sources",
                )),
            }
        };
        Ok(Debian {
            suites: raw.suites.into_inner(),
            components: raw.components.into_inner(),
            mirror: mirror(raw.mirror, "debian.mirror")?,
            security_mirror: mirror(raw.security_mirror, "debian.security-mirror")?,
        })
    }

    fn package_list(
        &self,
        raw: Spanned<Vec<String>>,
        field: &str,
    ) -> Result<Vec<String>, SpecError> {
        let mut seen = std::collections::BTreeSet::new();
        for name in raw.get_ref() {
            if !is_debian_package_name(name) {
                return Err(self.err(
                    &raw,
                    field,
                    format!("`{name}` is not a Debian package name"),
                    "use the package's name only, without version or architecture (`curl`, not `curl=8.1`)",
                ));
            }
            if !seen.insert(name) {
                return Err(self.err(
                    &raw,
                    field,
                    format!("`{name}` is listed twice"),
                    "remove the duplicate",
                ));
            }
        }
        Ok(raw.into_inner())
    }

    fn users(&self, raw: Vec<RawUser>) -> Result<Vec<User>, SpecError> {
        if raw.is_empty() {
            return Err(SpecError::at(
                self.file,
                self.text,
                None,
                Some("users"),
                "no user given",
                "add a [[users]] entry for the gateway user (name = \"openclaw\", uid = 1000)",
            ));
        }
        let mut users = Vec::new();
        for u in raw {
            let name = u.name.get_ref();
            if !is_hostname(name) || name == "root" {
                return Err(self.err(
                    &u.name,
                    "users.name",
                    format!("`{name}` is not a usable login name"),
                    "use lowercase letters, digits and `-`; not root",
                ));
            }
            if !(1000..60000).contains(&u.uid) || !(1000..60000).contains(&u.gid) {
                return Err(self.err(
                    &u.name,
                    "users.uid",
                    format!("user `{name}` has uid/gid outside 1000..60000"),
                    "give a regular user id, e.g. uid = 1000, gid = 1000",
                ));
            }
            for g in &u.groups {
                if !is_hostname(g) {
                    return Err(self.err(
                        &u.name,
                        "users.groups",
                        format!("user `{name}` names group `{g}`, which is not a group name"),
                        "use lowercase letters, digits and `-`",
                    ));
                }
                if ROOT_GROUPS.contains(&g.as_str()) {
                    return Err(self.err(
                        &u.name,
                        "users.groups",
                        format!("group `{g}` grants root to user `{name}` (ESC-1)"),
                        "remove it: the sandboxes run on a rootless daemon that needs no group, and no user of the appliance may reach root",
                    ));
                }
            }
            users.push(User {
                name: u.name.into_inner(),
                uid: u.uid,
                gid: u.gid,
                groups: u.groups,
                linger: u.linger,
            });
        }
        Ok(users)
    }

    fn openclaw(&self, raw: RawOpenClaw) -> Result<OpenClaw, SpecError> {
        if !is_exact_npm_version(raw.version.get_ref()) {
            return Err(self.err(
                &raw.version,
                "openclaw.version",
                format!("`{}` is not an exact version", raw.version.get_ref()),
                "give the exact npm version, e.g. \"2026.9.6\" (no ranges, no tags)",
            ));
        }
        let empty = Spanned::new(0..0, Vec::new());
        let plugins = raw.plugins.unwrap_or(empty);
        for p in plugins.get_ref() {
            let ok = p
                .rsplit_once('@')
                .is_some_and(|(n, v)| !n.is_empty() && is_exact_npm_version(v));
            if !ok {
                return Err(self.err(
                    &plugins,
                    "openclaw.plugins",
                    format!("`{p}` is not `name@exact-version`"),
                    "pin each plugin to an exact version, e.g. \"@openclaw/x@1.2.3\" (SUP-2)",
                ));
            }
        }
        if let Some(model) = &raw.model {
            let m = model.get_ref();
            let ok = !m.chars().any(|c| c.is_whitespace() || c.is_control())
                && m.split_once('/')
                    .is_some_and(|(provider, id)| !provider.is_empty() && !id.is_empty());
            if !ok {
                return Err(self.err(
                    model,
                    "openclaw.model",
                    format!("`{m}` is not `provider/model`"),
                    "name a model of a provider whose credentials first boot installs, e.g. \"anthropic/claude-opus-5\", or remove the line for OpenClaw's default",
                ));
            }
        }
        Ok(OpenClaw {
            version: raw.version.into_inner(),
            plugins: plugins.into_inner(),
            model: raw.model.map(Spanned::into_inner),
        })
    }

    fn node(&self, raw: RawNode) -> Result<Node, SpecError> {
        let version = raw.version.get_ref().parse::<Version>().map_err(|why| {
            self.err(
                &raw.version,
                "node.version",
                format!("not an exact version: {why}"),
                "give an exact Node version such as \"24.21.0\" that satisfies OpenClaw's engines (>=24.16.0 <25 || >=26.1.0)",
            )
        })?;
        Ok(Node { version })
    }

    fn tailscale(&self, raw: RawTailscale, arch: Arch) -> Result<Tailscale, SpecError> {
        let version = raw.version.get_ref();
        if !version.starts_with(|c: char| c.is_ascii_digit()) || version.parse::<Version>().is_err()
        {
            return Err(self.err(
                &raw.version,
                "tailscale.version",
                format!("`{version}` is not an exact version"),
                "give the exact release version without `v`, e.g. \"1.102.5\"",
            ));
        }
        let source = match &raw.source {
            Some(s) if s.get_ref() == "tarball" => {
                let (Some(url), Some(sha256)) = (raw.url, raw.sha256) else {
                    return Err(self.err(
                        s,
                        "tailscale.source",
                        "`source = \"tarball\"` needs both `url` and `sha256`",
                        "add the tarball's https `url` and its `sha256`, or remove `source` to build from the Go module",
                    ));
                };
                self.tarball(version, url, sha256, arch)?
            }
            Some(s) if s.get_ref() != "module" => {
                return Err(self.err(
                    s,
                    "tailscale.source",
                    format!("`{}` is not a Tailscale source", s.get_ref()),
                    "use \"module\" (build from the Go module tailscale.com, the default) or \"tarball\" (the official static tarball with `url` and `sha256`)",
                ));
            }
            _ => {
                if let Some(key) = raw.url.as_ref().or(raw.sha256.as_ref()) {
                    let field = if raw.url.is_some() {
                        "tailscale.url"
                    } else {
                        "tailscale.sha256"
                    };
                    return Err(self.err(
                        key,
                        field,
                        "`url` and `sha256` pin the release tarball, but Tailscale is built from its Go module source",
                        "remove `url` and `sha256` (the lock pins every Go module), or set `source = \"tarball\"` to use the tarball",
                    ));
                }
                TailscaleSource::Module
            }
        };
        Ok(Tailscale {
            version: raw.version.into_inner(),
            source,
        })
    }

    fn tarball(
        &self,
        version: &str,
        url: Spanned<String>,
        sha256: Spanned<String>,
        arch: Arch,
    ) -> Result<TailscaleSource, SpecError> {
        let expected = format!("tailscale_{version}_{}.tgz", arch.debian());
        if !url.get_ref().starts_with("https://") || !url.get_ref().ends_with(&expected) {
            return Err(self.err(
                &url,
                "tailscale.url",
                format!("the URL does not name `{expected}`"),
                format!("use the https URL of the static tarball `{expected}`"),
            ));
        }
        let sha = sha256.get_ref();
        if sha.len() != 64
            || !sha
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return Err(self.err(
                &sha256,
                "tailscale.sha256",
                "not a sha256 in lowercase hex",
                "give the 64 lowercase hex digits of the tarball's sha256",
            ));
        }
        Ok(TailscaleSource::Tarball {
            url: url.into_inner(),
            sha256: sha256.into_inner(),
        })
    }

    fn gateway(&self, raw: RawGateway) -> Result<Gateway, SpecError> {
        if *raw.port.get_ref() < 1024 {
            return Err(self.err(
                &raw.port,
                "gateway.port",
                "a privileged port cannot be bound by the unprivileged gateway user",
                "use OpenClaw's default, 18789",
            ));
        }
        for p in raw.trusted_proxies.get_ref() {
            let (addr, len) = p.split_once('/').unwrap_or((p, ""));
            let max = match addr.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(_)) => Some(32),
                Ok(std::net::IpAddr::V6(_)) => Some(128),
                Err(_) => None,
            };
            let ok =
                max.is_some_and(|max| len.is_empty() || len.parse::<u8>().is_ok_and(|l| l <= max));
            if !ok {
                return Err(self.err(
                    &raw.trusted_proxies,
                    "gateway.trusted-proxies",
                    format!("`{p}` is not an IP address or CIDR"),
                    "list addresses or CIDRs, e.g. [\"127.0.0.1\"]",
                ));
            }
        }
        Ok(Gateway {
            port: raw.port.into_inner(),
            bind: raw.bind,
            allow_tailscale: raw.allow_tailscale,
            trusted_proxies: raw.trusted_proxies.into_inner(),
            tailscale_serve: raw.tailscale_serve,
            firewall: raw.firewall,
        })
    }

    fn sandbox(&self, raw: RawSandbox) -> Result<Sandbox, SpecError> {
        let net = raw.network.get_ref();
        if net == "host" || net.starts_with("container:") {
            return Err(self.err(
                &raw.network,
                "sandbox.network",
                format!("network `{net}` would give sandboxes the host's network (AGT-6, LAT-1)"),
                "use \"bridge\"",
            ));
        }
        if !matches!(
            raw.workspace_access.get_ref().as_str(),
            "rw" | "ro" | "none"
        ) {
            return Err(self.err(
                &raw.workspace_access,
                "sandbox.workspace-access",
                format!(
                    "`{}` is not a workspace access mode",
                    raw.workspace_access.get_ref()
                ),
                "use \"rw\", \"ro\" or \"none\"",
            ));
        }
        if !raw.image.get_ref().contains(':') {
            return Err(self.err(
                &raw.image,
                "sandbox.image",
                "the image reference has no tag",
                "use `name:tag`, e.g. \"openclaw-sandbox-custom:latest\"",
            ));
        }
        let pids = *raw.pids_limit.get_ref();
        if !(64..=65536).contains(&pids) {
            return Err(self.err(
                &raw.pids_limit,
                "sandbox.pids-limit",
                format!("{pids} processes is not a usable limit for one sandbox (ESC-3)"),
                "use a number from 64 to 65536, e.g. 512",
            ));
        }
        let memory = raw.memory.get_ref();
        let (digits, unit) = memory.split_at(memory.len().saturating_sub(1));
        let amount: u64 = digits.parse().unwrap_or(0);
        let mib = match unit {
            "m" => amount,
            "g" => amount.saturating_mul(1024),
            _ => 0,
        };
        if mib < 64 {
            return Err(self.err(
                &raw.memory,
                "sandbox.memory",
                format!("`{memory}` is not a memory limit of at least 64 MiB (ESC-3)"),
                "use a whole number of MiB or GiB in Docker's notation, e.g. \"1g\" or \"1536m\"",
            ));
        }
        let cpus = *raw.cpus.get_ref();
        if cpus == 0 {
            return Err(self.err(
                &raw.cpus,
                "sandbox.cpus",
                "0 CPUs would leave sandboxes no time at all",
                "use a whole number of CPUs, e.g. 1",
            ));
        }
        Ok(Sandbox {
            image: raw.image.into_inner(),
            network: raw.network.into_inner(),
            workspace_access: raw.workspace_access.into_inner(),
            read_only_root: raw.read_only_root,
            pids_limit: pids,
            memory: raw.memory.into_inner(),
            cpus,
        })
    }
}
