//! `build-image`: spec + lock + store → `target/image/<name>.raw`.
//!
//! Stages, each cached under a key that hashes its inputs and recipe
//! ([`stage_key`]), so an unchanged stage is a cache hit:
//! tools tree → base rootfs → sandbox image → app (Node + OpenClaw) →
//! appliance layer → merged root tarball → disk. Runs offline from the
//! store and never sees a secret (SEC-1).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use appliance::files::{self, Context as FilesContext};
use image_spec::Spec;
use image_spec::lock::Lock;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::debian::mirror::Archives;
use crate::disk;
use crate::fsutil::write_atomic;
use crate::locking::Project;
use crate::npm::{AppTree, Runtime, install_app};
use crate::rootfs::bootstrap::{self, Bootstrap};
use crate::rootfs::merge::{Overlay, merge};
use crate::rootfs::repo::LocalRepo;
use crate::store::{Store, sha256_file};
use crate::tools::ToolsTree;

/// Bump when a stage's recipe changes in a way its inputs don't show.
const RECIPE: &str = "openclaw-image/stages/v1";

/// What `build-image` needs.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Spec and lock files.
    pub project: Project,
    /// The workspace root (the first-boot agent is built from it).
    pub project_root: PathBuf,
    /// The verified input store.
    pub store: Store,
    /// Stage cache directory (never shared between the two builds of `verify-repro`).
    pub stage_dir: PathBuf,
    /// Output directory (`target/image`).
    pub out_dir: PathBuf,
    /// Archive roots written into the image's apt sources.
    pub archives: Archives,
    /// The npm registry the store's npm cache was filled from.
    pub npm_registry: String,
    /// Also write `<name>.raw.zst`.
    pub compress: bool,
}

/// What `build-image` made.
#[derive(Debug, Clone)]
pub struct BuildReport {
    /// The raw image.
    pub image: PathBuf,
    /// Its sha256.
    pub sha256: String,
    /// The manifest beside it.
    pub manifest: PathBuf,
    /// Whether Tailscale is in the image.
    pub tailscale: bool,
    /// Allocated bytes of the raw image.
    pub allocated_bytes: u64,
}

/// The cache key of a stage: its name, the recipe version and its inputs.
pub fn stage_key(name: &str, inputs: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(RECIPE.as_bytes());
    h.update([0]);
    h.update(name.as_bytes());
    for i in inputs {
        h.update([0]);
        h.update(i.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

fn closure_hashes(lock: &Lock, set: &str) -> String {
    lock.closure(set)
        .map(|d| d.sha256.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Builds the image.
pub fn build_image(opts: &BuildOptions) -> Result<BuildReport> {
    let started = Instant::now();
    let spec = opts.project.read_spec()?;
    let lock = opts.project.require_lock()?;
    let diffs = opts.project.check(&spec, &lock)?;
    if !diffs.is_empty() {
        bail!(
            "image.lock does not match the spec: {}; run `cargo xtask lock`",
            diffs.join("; ")
        );
    }
    fs::create_dir_all(&opts.stage_dir)
        .with_context(|| format!("creating {}", opts.stage_dir.display()))?;
    fs::create_dir_all(&opts.out_dir)
        .with_context(|| format!("creating {}", opts.out_dir.display()))?;
    let epoch = spec.image.source_date_epoch;
    let mut stages = Vec::new();

    let tools = tools_stage(opts, &lock, epoch)?;
    stages.push(("tools", tools.1.clone()));
    let base = base_stage(opts, &spec, &lock)?;
    stages.push(("base", base.1.clone()));
    let sandbox = sandbox_stage(opts, &spec, &lock)?;
    stages.push(("sandbox", sandbox.key.clone()));
    let app = app_stage(opts, &spec, &lock)?;
    stages.push(("app", app.1.clone()));

    let tailscale = opts.store.has_verified(
        &lock.tailscale.sha256,
        &crate::sources::tailscale_input(&lock).name,
    )?;
    if !tailscale {
        eprintln!(
            "warning: Tailscale {} is NOT in the store: building without it.\n  \
             the manifest records it as absent; vm-test reports TS-1 and NET-8 as not run.\n  \
             supply it with `cargo xtask fetch --input-dir DIR` (DIR holding {})",
            lock.tailscale.version,
            crate::sources::tailscale_input(&lock).name
        );
    }

    let esp = &lock.disk.esp_volume_id;
    let ctx = FilesContext {
        tailscale,
        root_fs_uuid: lock.disk.root_fs_uuid.clone(),
        esp_volume_id: format!("{}-{}", esp[..4].to_uppercase(), esp[4..].to_uppercase()),
        sandbox_image_id: sandbox.image_id.clone(),
    };
    let tree = files::render(&spec, &ctx);
    // The baked config must be valid for the pinned OpenClaw (NET-6).
    let cfg_path = opts.stage_dir.join("openclaw.json");
    let user = spec.gateway_user();
    let cfg = tree
        .text(&format!("home/{}/.openclaw/openclaw.json", user.name))
        .context("the appliance layer has no openclaw.json")?;
    write_atomic(&cfg_path, cfg.as_bytes())?;
    crate::npm::validate_config(&app.0, &cfg_path)
        .context("the baked openclaw.json is not valid for the pinned OpenClaw")?;

    let agent = crate::agent_binary::build(&opts.project_root, epoch)?;
    stages.push(("agent", sha256_file(&agent)?));

    let mut overlay = Overlay::default();
    overlay.add_file(appliance::firstboot::BINARY_PATH, &agent, 0o755);
    overlay.add_tree(&tree);
    overlay.add_dir("opt/node", &app.0.root.join("opt/node"))?;
    overlay.add_dir("opt/openclaw", &app.0.root.join("opt/openclaw"))?;
    let mut wrapper = appliance::Tree::default();
    wrapper.file("usr/local/bin/openclaw", 0o755, app.0.wrapper());
    overlay.add_tree(&wrapper);
    overlay.add_file(files::SANDBOX_ARCHIVE, &sandbox.archive, 0o644);
    overlay.add_tree(&sources_tree(&opts.archives, &spec));
    if tailscale {
        let input = crate::sources::tailscale_input(&lock);
        let tgz = opts.store.get(&lock.tailscale.sha256, &input.name)?;
        overlay.add_tree(&crate::tailscale::tree(&tgz, &lock.tailscale.version)?);
        eprintln!("tailscale: {} from {}", lock.tailscale.version, input.name);
    }

    let manifest_inner = manifest(
        &spec,
        &lock,
        &stages,
        &sandbox,
        tailscale,
        &opts.archives,
        None,
    );
    let manifest_inner_path = opts.stage_dir.join("manifest.inner.json");
    write_atomic(&manifest_inner_path, manifest_inner.as_bytes())?;
    overlay.add_file(files::MANIFEST, &manifest_inner_path, 0o644);

    let root_tar = opts.stage_dir.join("root.tar");
    let n = merge(&base.0, &overlay, epoch, &root_tar)?;
    eprintln!("root: {n} entries in {}", root_tar.display());

    let raw = opts.out_dir.join(format!("{}.raw", spec.image.name));
    let report = disk::assemble(
        &tools.0,
        &root_tar,
        &lock.disk,
        spec.image.disk_size_mib,
        epoch,
        &raw,
    )?;
    write_atomic(
        &opts.out_dir.join(format!("{}.raw.sha256", spec.image.name)),
        format!("{}  {}.raw\n", report.sha256, spec.image.name).as_bytes(),
    )?;
    let manifest_path = opts
        .out_dir
        .join(format!("{}.manifest.json", spec.image.name));
    write_atomic(
        &manifest_path,
        manifest(
            &spec,
            &lock,
            &stages,
            &sandbox,
            tailscale,
            &opts.archives,
            Some(&report.sha256),
        )
        .as_bytes(),
    )?;
    if opts.compress {
        let zst = opts.out_dir.join(format!("{}.raw.zst", spec.image.name));
        let tmp = opts
            .out_dir
            .join(format!(".{}.raw.zst.tmp", spec.image.name));
        duct::cmd!("zstd", "-q", "-f", "-T0", "-3", &raw, "-o", &tmp)
            .run()
            .context("compressing the image with zstd")?;
        fs::rename(&tmp, &zst).with_context(|| format!("renaming into {}", zst.display()))?;
    }
    eprintln!(
        "build-image: {} sha256 {} ({:.0} MiB allocated) in {:.0?}",
        raw.display(),
        report.sha256,
        report.allocated_bytes as f64 / (1u64 << 20) as f64,
        started.elapsed()
    );
    Ok(BuildReport {
        image: raw,
        sha256: report.sha256,
        manifest: manifest_path,
        tailscale,
        allocated_bytes: report.allocated_bytes,
    })
}

fn tools_stage(opts: &BuildOptions, lock: &Lock, epoch: u64) -> Result<(ToolsTree, String)> {
    let key = stage_key(
        "tools",
        &[&closure_hashes(lock, "tools"), &epoch.to_string()],
    );
    let dir = opts.stage_dir.join(format!("tools-{key}"));
    if dir.is_dir() {
        eprintln!("tools tree: cached ({key})");
        return Ok((ToolsTree::open(&dir)?, key));
    }
    let repo = LocalRepo::create(
        &opts.stage_dir.join("repo-tools"),
        &opts.store,
        lock,
        "tools",
        &lock.inputs.suites[0],
    )?;
    Ok((ToolsTree::create(&dir, &repo.source_line(), epoch)?, key))
}

/// Shell hooks that run inside mmdebstrap's root (`$1`) for the host rootfs.
fn base_hooks(spec: &Spec) -> Vec<String> {
    let mut hooks = Vec::new();
    for u in &spec.users {
        hooks.push(format!(
            "chroot \"$1\" groupadd --gid {gid} {name} && chroot \"$1\" useradd --uid {uid} --gid {gid} --create-home --shell /bin/bash {name}",
            gid = u.gid,
            uid = u.uid,
            name = u.name
        ));
        for g in &u.groups {
            hooks.push(format!(
                "chroot \"$1\" usermod --append --groups {g} {}",
                u.name
            ));
        }
    }
    // Known non-determinism and things that must never ship (SEC-1, SSH-2).
    hooks.push(
        "rm -f \"$1\"/etc/ssh/ssh_host_* \"$1\"/var/lib/dbus/machine-id \"$1\"/var/cache/ldconfig/aux-cache \
         \"$1\"/etc/*- \"$1\"/var/lib/systemd/random-seed \"$1\"/var/lib/systemd/credential.secret \
         \"$1\"/var/log/*.log \"$1\"/var/log/apt/* \"$1\"/var/cache/debconf/*-old \"$1\"/var/lib/dpkg/*-old \
         && rm -rf \"$1\"/var/cache/man \"$1\"/etc/apt/sources.list \
         && find \"$1\"/usr -name __pycache__ -type d -prune -exec rm -rf {} + \
         && : > \"$1\"/etc/machine-id"
            .into(),
    );
    hooks
}

fn base_stage(opts: &BuildOptions, spec: &Spec, lock: &Lock) -> Result<(PathBuf, String)> {
    let hooks = base_hooks(spec);
    let epoch = spec.image.source_date_epoch.to_string();
    let key = stage_key(
        "base",
        &[
            &closure_hashes(lock, "host"),
            &spec.packages.host.join(","),
            &hooks.join("\n"),
            &epoch,
        ],
    );
    let out = opts.stage_dir.join(format!("base-{key}.tar"));
    if out.is_file() {
        eprintln!("base rootfs: cached ({key})");
        return Ok((out, key));
    }
    let repo = LocalRepo::create(
        &opts.stage_dir.join("repo-host"),
        &opts.store,
        lock,
        "host",
        &spec.debian.suites[0],
    )?;
    let tmp = opts.stage_dir.join(format!(".base-{key}.tmp.tar"));
    bootstrap::run(
        &Bootstrap {
            suite: &spec.debian.suites[0],
            include: &spec.packages.host,
            customize: hooks,
            epoch: spec.image.source_date_epoch,
            source: repo.source_line(),
            label: "base rootfs",
        },
        &tmp,
    )?;
    fs::rename(&tmp, &out).with_context(|| format!("renaming into {}", out.display()))?;
    Ok((out, key))
}

/// The sandbox image stage's outputs.
#[derive(Debug, Clone)]
struct SandboxStage {
    key: String,
    archive: PathBuf,
    image_id: String,
}

fn sandbox_hooks() -> Vec<String> {
    vec![
        "chroot \"$1\" groupadd --gid 1000 node && chroot \"$1\" useradd --uid 1000 --gid 1000 --create-home --home-dir /home/node --shell /bin/bash node".into(),
        "echo 'en_US.UTF-8 UTF-8' > \"$1\"/etc/locale.gen && chroot \"$1\" locale-gen".into(),
        "ln -sf /usr/bin/fdfind \"$1\"/usr/local/bin/fd".into(),
        // git-lfs's postinst (`git lfs install --system`) writes the keys of
        // [filter "lfs"] in Go map order: rewrite /etc/gitconfig sorted.
        "if [ -f \"$1\"/etc/gitconfig ]; then \
         chroot \"$1\" git config --system --list | LC_ALL=C sort > \"$1\"/etc/gitconfig.sorted \
         && rm \"$1\"/etc/gitconfig \
         && while IFS== read -r k v; do chroot \"$1\" git config --system \"$k\" \"$v\" || exit 1; done < \"$1\"/etc/gitconfig.sorted \
         && rm \"$1\"/etc/gitconfig.sorted; fi"
            .into(),
        "rm -f \"$1\"/var/cache/ldconfig/aux-cache \"$1\"/etc/*- \"$1\"/var/log/*.log \"$1\"/var/log/apt/* \
         \"$1\"/var/cache/debconf/*-old \"$1\"/var/lib/dpkg/*-old \"$1\"/etc/apt/sources.list \
         && rm -rf \"$1\"/var/cache/man \
         && find \"$1\"/usr -name __pycache__ -type d -prune -exec rm -rf {} + \
         && : > \"$1\"/etc/machine-id"
            .into(),
    ]
}

fn sandbox_stage(opts: &BuildOptions, spec: &Spec, lock: &Lock) -> Result<SandboxStage> {
    let hooks = sandbox_hooks();
    let epoch = spec.image.source_date_epoch;
    let key = stage_key(
        "sandbox",
        &[
            &closure_hashes(lock, "sandbox"),
            &spec.packages.sandbox.join(","),
            &hooks.join("\n"),
            &spec.sandbox.image,
            &epoch.to_string(),
        ],
    );
    let archive = opts.stage_dir.join(format!("sandbox-{key}.image.tar"));
    let id_file = opts.stage_dir.join(format!("sandbox-{key}.id"));
    if archive.is_file() && id_file.is_file() {
        eprintln!("sandbox image: cached ({key})");
        let image_id = fs::read_to_string(&id_file)
            .with_context(|| format!("reading {}", id_file.display()))?;
        return Ok(SandboxStage {
            key,
            archive,
            image_id: image_id.trim().to_string(),
        });
    }
    let repo = LocalRepo::create(
        &opts.stage_dir.join("repo-sandbox"),
        &opts.store,
        lock,
        "sandbox",
        &spec.debian.suites[0],
    )?;
    let rootfs = opts.stage_dir.join(format!(".sandbox-{key}.rootfs.tar"));
    bootstrap::run(
        &Bootstrap {
            suite: &spec.debian.suites[0],
            include: &spec.packages.sandbox,
            customize: hooks,
            epoch,
            source: repo.source_line(),
            label: "sandbox rootfs",
        },
        &rootfs,
    )?;
    let config = crate::oci::ImageConfig {
        reference: spec.sandbox.image.clone(),
        user: "1000".into(),
        working_dir: "/home/node".into(),
        env: vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            "HOME=/home/node".into(),
            "LANG=en_US.UTF-8".into(),
        ],
        cmd: vec!["sleep".into(), "infinity".into()],
        created_epoch: epoch,
        labels: Default::default(),
    };
    let info = crate::oci::write_image(&rootfs, &config, &archive)?;
    fs::remove_file(&rootfs).with_context(|| format!("removing {}", rootfs.display()))?;
    write_atomic(&id_file, info.image_id.as_bytes())?;
    eprintln!("sandbox image: {} {}", spec.sandbox.image, info.image_id);
    Ok(SandboxStage {
        key,
        archive,
        image_id: info.image_id,
    })
}

fn app_stage(opts: &BuildOptions, spec: &Spec, lock: &Lock) -> Result<(AppTree, String)> {
    let epoch = spec.image.source_date_epoch;
    let key = stage_key(
        "app",
        &[
            &crate::npm::APP_RECIPE_VERSION.to_string(),
            &lock.node.sha256,
            &lock.openclaw.npm.sha256,
            &lock.openclaw.npm_lockfile_sha256,
            &epoch.to_string(),
        ],
    );
    let dir = opts.stage_dir.join(format!("app-{key}"));
    if dir.is_dir() {
        eprintln!("app (Node + OpenClaw): cached ({key})");
        return Ok((AppTree::open(&dir)?, key));
    }
    let tmp = opts.stage_dir.join(format!(".app-{key}.tmp"));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    let runtime = Runtime::new(&opts.store, &lock.node, &lock.openclaw.npm)?;
    install_app(
        &runtime,
        &opts.npm_registry,
        &opts.project.npm_lock,
        &opts.store,
        &tmp,
        epoch,
    )?;
    fs::rename(&tmp, &dir).with_context(|| format!("renaming into {}", dir.display()))?;
    Ok((AppTree::open(&dir)?, key))
}

/// apt sources of the running appliance (for unattended-upgrades, SRV-4).
fn sources_tree(archives: &Archives, spec: &Spec) -> appliance::Tree {
    let base = &spec.debian.suites[0];
    let main: Vec<&str> = spec
        .debian
        .suites
        .iter()
        .filter(|s| !s.ends_with("-security"))
        .map(String::as_str)
        .collect();
    let comps = spec.debian.components.join(" ");
    let mut t = appliance::Tree::default();
    t.file(
        "etc/apt/sources.list.d/debian.sources",
        0o644,
        format!(
            "Types: deb\nURIs: {}\nSuites: {}\nComponents: {comps}\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
             Types: deb\nURIs: {}\nSuites: {base}-security\nComponents: {comps}\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
            archives.debian,
            main.join(" "),
            archives.security,
        ),
    );
    t
}

/// The manifest/SBOM (SUP-3): every input with version and hash, each
/// stage's key, and (outside the image) the image's sha256.
fn manifest(
    spec: &Spec,
    lock: &Lock,
    stages: &[(&str, String)],
    sandbox: &SandboxStage,
    tailscale: bool,
    archives: &Archives,
    image_sha256: Option<&str>,
) -> String {
    let debs: Vec<_> = lock
        .debs
        .iter()
        .map(|d| json!({"name": d.name, "version": d.version, "architecture": d.architecture, "sha256": d.sha256, "sets": d.sets}))
        .collect();
    let v = json!({
        "name": spec.image.name,
        "source_date_epoch": spec.image.source_date_epoch,
        "image_sha256": image_sha256,
        "openclaw": {"version": lock.openclaw.version, "integrity": lock.openclaw.integrity, "npm_lockfile_sha256": lock.openclaw.npm_lockfile_sha256, "packages": lock.openclaw.packages},
        "node": {"version": lock.node.version, "integrity": lock.node.integrity, "sha256": lock.node.sha256},
        "tailscale": {"version": lock.tailscale.version, "sha256": lock.tailscale.sha256, "present": tailscale,
                      "note": if tailscale { "included" } else { "ABSENT: not in the store at build time; TS-1 and NET-8 cannot hold" }},
        "sandbox_image": {"reference": spec.sandbox.image, "id": sandbox.image_id},
        // Written into the image's apt sources: a rebuild must use the same
        // (`verify-repro --against MANIFEST` passes them on).
        "apt_sources": {"debian": archives.debian, "security": archives.security},
        "stages": stages.iter().map(|(n, k)| json!({"name": n, "key": k})).collect::<Vec<_>>(),
        "debian_packages": debs,
    });
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    s
}

/// The sha256 of a built image file (for `verify-repro` and `upload`).
pub fn image_sha256(path: &Path) -> Result<String> {
    sha256_file(path)
}
