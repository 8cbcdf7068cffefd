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
use crate::fsutil::write_atomic;
use crate::locking::Project;
use crate::npm::{AppTree, Runtime, install_app};
use crate::progress::Progress;
use crate::rootfs::bootstrap::{self, Bootstrap};
use crate::rootfs::merge::{Late, Overlay, merge_into};
use crate::rootfs::repo::LocalRepo;
use crate::store::Store;
use disk::tools::ToolsTree;
use hostutil::sha256_file;

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
    /// Also write the merged root tarball to `<stage_dir>/root.tar` (for
    /// `verify-repro`'s stage comparison); otherwise it is only streamed
    /// into `mke2fs`.
    pub keep_root_tar: bool,
}

/// What `build-image` made (`build-image --json`, docs/cli.md).
#[derive(Debug, Clone, serde::Serialize)]
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

impl BuildReport {
    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        // Paths, strings and numbers: serializing cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
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

/// Wall-clock seconds per step of one build, printed as the build goes and
/// once more as one line at the end (`build-image: step seconds: …`), which
/// `cargo xtask bench` reads.
/// Each step also tells the build's [`Progress`] when it starts and ends.
#[derive(Debug)]
struct Steps<'p> {
    done: Vec<(&'static str, f64)>,
    progress: &'p Progress,
}

impl<'p> Steps<'p> {
    fn new(progress: &'p Progress) -> Self {
        Steps {
            done: Vec::new(),
            progress,
        }
    }

    /// Runs `f` as the step `name`, recording its wall-clock time.
    fn time<T>(&mut self, name: &'static str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let (out, secs) = timed(self.progress, name, f);
        eprintln!("step {name}: {secs:.1} s");
        self.done.push((name, secs));
        out
    }

    /// Records the step `name` that ran elsewhere (see [`timed`]).
    fn record<T>(&mut self, name: &'static str, (out, secs): (Result<T>, f64)) -> Result<T> {
        eprintln!("step {name}: {secs:.1} s");
        self.done.push((name, secs));
        out.with_context(|| format!("build step `{name}`"))
    }

    fn summary(&self) -> String {
        let parts: Vec<String> = self
            .done
            .iter()
            .map(|(n, s)| format!("{n}={s:.1}"))
            .collect();
        format!("build-image: step seconds: {}", parts.join(" "))
    }
}

/// Runs `f` as the step `name` of `progress`, returning its result and its
/// wall-clock seconds.
fn timed<T>(
    progress: &Progress,
    name: &'static str,
    f: impl FnOnce() -> Result<T>,
) -> (Result<T>, f64) {
    progress.begin(name);
    let started = Instant::now();
    let out = f();
    let secs = started.elapsed().as_secs_f64();
    progress.end(name, secs);
    (out, secs)
}

/// Joins a stage's thread; a panic in it becomes an error.
fn join<T>(handle: std::thread::ScopedJoinHandle<'_, (Result<T>, f64)>) -> (Result<T>, f64) {
    handle
        .join()
        .unwrap_or_else(|_| (Err(anyhow::anyhow!("the stage's thread panicked")), 0.0))
}

/// What a finished build records beside the image (`<name>.build.json`), so
/// that a rebuild with the same inputs can skip the disk: the image key
/// (every stage key, the appliance layer, the agent's hash, the spec and
/// lock files, the builder program) and the image file's identity when it
/// was written. The image is trusted only while its size, mtime, ctime and
/// inode are unchanged: writing to it, `touch`, or replacing it changes the
/// ctime or inode (ctime cannot be set back from user space), and then the
/// disk is rebuilt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct BuildRecord {
    layer_key: String,
    image_key: String,
    sha256: String,
    size: u64,
    allocated_bytes: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    inode: u64,
}

impl BuildRecord {
    fn identity(path: &Path) -> Result<(u64, u64, i128, i128, u64)> {
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
        Ok((
            m.len(),
            m.blocks() * 512,
            i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
            m.ino(),
        ))
    }

    fn new(layer_key: &str, image_key: &str, sha256: &str, image: &Path) -> Result<BuildRecord> {
        let (size, allocated_bytes, mtime_ns, ctime_ns, inode) = Self::identity(image)?;
        Ok(BuildRecord {
            layer_key: layer_key.to_string(),
            image_key: image_key.to_string(),
            sha256: sha256.to_string(),
            size,
            allocated_bytes,
            mtime_ns,
            ctime_ns,
            inode,
        })
    }

    /// The record at `path` if `image` is unchanged since it was written.
    fn unchanged(path: &Path, image: &Path) -> Option<BuildRecord> {
        let text = fs::read_to_string(path).ok()?;
        let rec: BuildRecord = serde_json::from_str(&text).ok()?;
        let now = BuildRecord::new(&rec.layer_key, &rec.image_key, &rec.sha256, image).ok()?;
        (rec == now).then_some(rec)
    }
}

fn file_sha256_or_empty(path: &Path) -> String {
    fs::read(path)
        .map(|b| hex::encode(Sha256::digest(&b)))
        .unwrap_or_default()
}

/// The running builder program's identity (size and mtime): any rebuild of
/// it invalidates recorded images, so a change of the disk code is never
/// skipped.
fn program_identity() -> String {
    std::env::current_exe()
        .and_then(fs::metadata)
        .and_then(|m| Ok(format!("{} {:?}", m.len(), m.modified()?)))
        .unwrap_or_else(|_| "unknown".into())
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
    // A source build of Tailscale needs the locked Go: say so before the
    // stages start, not after minutes of the others.
    if let Some(go) = &lock.tailscale.go {
        crate::gomod::toolchain::Go::find(&opts.stage_dir)?.require(go)?;
    }
    let epoch = spec.image.source_date_epoch;
    // The first-boot agent compiles (cargo) while the stages are checked and
    // the base is streamed; it is needed only near the end of the stream.
    std::thread::scope(|scope| {
        let mut handle =
            Some(scope.spawn(|| crate::agent_binary::build(&opts.project_root, epoch)));
        let mut built: Option<PathBuf> = None;
        let mut join_agent = move || -> Result<PathBuf> {
            if let Some(path) = &built {
                return Ok(path.clone());
            }
            let path = handle
                .take()
                .context("the first-boot agent's build failed earlier")?
                .join()
                .map_err(|_| anyhow::anyhow!("the first-boot agent's build thread panicked"))??;
            built = Some(path.clone());
            Ok(path)
        };
        // A status line every few seconds, with an estimate from the last
        // build's step times (docs/cli.md, "Progress").
        let progress = Progress::start(&opts.stage_dir.join(TIMINGS_FILE));
        let built = build_stages(opts, &spec, &lock, started, &progress, &mut join_agent);
        if let Err(e) = progress.finish(built.is_ok()) {
            eprintln!("warning: the step times for the next estimate were not saved: {e:#}");
        }
        built
    })
}

/// The file in the stage directory that keeps the last build's step times
/// (the progress estimate).
pub const TIMINGS_FILE: &str = "timings.json";

fn build_stages(
    opts: &BuildOptions,
    spec: &Spec,
    lock: &Lock,
    started: Instant,
    progress: &Progress,
    join_agent: &mut dyn FnMut() -> Result<PathBuf>,
) -> Result<BuildReport> {
    let epoch = spec.image.source_date_epoch;
    let mut steps = Steps::new(progress);
    let mut stages = Vec::new();

    // The four input stages depend only on the lock and the spec, not on
    // one another: they run at once (each `mmdebstrap` is mostly one busy
    // core and some waiting on the disk), and each writes only its own
    // keyed outputs, so their bytes are those of a run one after the other.
    let (tools, base, sandbox, app, tailscale_src) = std::thread::scope(|s| {
        let tools = s.spawn(|| timed(progress, "tools", || tools_stage(opts, lock, epoch)));
        let base = s.spawn(|| timed(progress, "base", || base_stage(opts, spec, lock)));
        let sandbox = s.spawn(|| timed(progress, "sandbox", || sandbox_stage(opts, spec, lock)));
        let tailscale = s.spawn(|| {
            timed(progress, "tailscale", || {
                tailscale_source_stage(opts, lock, epoch)
            })
        });
        let app = timed(progress, "app", || app_stage(opts, spec, lock));
        (join(tools), join(base), join(sandbox), app, join(tailscale))
    });
    let tools = steps.record("tools", tools)?;
    stages.push(("tools", tools.1.clone()));
    let base = steps.record("base", base)?;
    stages.push(("base", base.1.clone()));
    let sandbox = steps.record("sandbox", sandbox)?;
    stages.push(("sandbox", sandbox.key.clone()));
    let store = steps.time("sandbox-store", || {
        sandbox_store_stage(opts, spec, &sandbox)
    })?;
    stages.push(("sandbox-store", store.key.clone()));
    let app = steps.record("app", app)?;
    stages.push(("app", app.1.clone()));
    let tailscale_src = steps.record("tailscale", tailscale_src)?;
    if let Some((_, key)) = &tailscale_src {
        stages.push(("tailscale", key.clone()));
    }

    let tarball = crate::sources::tailscale_input(lock);
    let tailscale = match &tarball {
        None => tailscale_src.is_some(),
        Some(input) => opts.store.has_verified(&input.sha256, &input.name)?,
    };
    if let (Some(input), false) = (&tarball, tailscale) {
        eprintln!(
            "warning: Tailscale {} is NOT in the store: building without it.\n  \
             the manifest records it as absent; vm-test reports TS-1 and NET-8 as not run.\n  \
             supply it with `cargo xtask fetch --input-dir DIR` (DIR holding {}), or build it \
             from source (docs/tailscale.md)",
            lock.tailscale.version, input.name
        );
    }

    let esp = &lock.disk.esp_volume_id;
    let ctx = FilesContext {
        tailscale,
        root_fs_uuid: lock.disk.root_fs_uuid.clone(),
        esp_volume_id: format!("{}-{}", esp[..4].to_uppercase(), esp[4..].to_uppercase()),
        sandbox_image_id: sandbox.image_id.clone(),
    };
    let tree = files::render(spec, &ctx);
    steps.time("config", || check_config(opts, spec, &tree, &app))?;

    // The layer without the app tree (keyed by the app stage) and without
    // the agent and manifest (added late, below).
    let mut overlay = Overlay::default();
    overlay.add_tree(&tree);
    let mut wrapper = appliance::Tree::default();
    wrapper.file("usr/local/bin/openclaw", 0o755, app.0.wrapper());
    overlay.add_tree(&wrapper);
    // The sandbox image, already in Docker's image store (AGT-2): no
    // archive to load at first boot.
    overlay.add_tar(&store.tar)?;
    overlay.add_tree(&sources_tree(&opts.archives, spec));
    match (&tailscale_src, &tarball) {
        (Some((dir, _)), _) => {
            let files = crate::tailscale::source::files(dir)?;
            overlay.add_tree(&crate::tailscale::tree(files));
            eprintln!(
                "tailscale: {} built from the Go module {}",
                lock.tailscale.version,
                image_spec::spec::TAILSCALE_MODULE
            );
        }
        (None, Some(input)) if tailscale => {
            let tgz = opts.store.get(&input.sha256, &input.name)?;
            overlay.add_tree(&crate::tailscale::tarball::tree(
                &tgz,
                &lock.tailscale.version,
            )?);
            eprintln!("tailscale: {} from {}", lock.tailscale.version, input.name);
        }
        _ => {}
    }
    let layer_key = stage_key(
        "image",
        &[
            &file_sha256_or_empty(&opts.project.spec),
            &file_sha256_or_empty(&opts.project.lock),
            &file_sha256_or_empty(&opts.project.npm_lock),
            &stages
                .iter()
                .map(|(n, k)| format!("{n}={k}"))
                .collect::<Vec<_>>()
                .join(","),
            &tailscale.to_string(),
            &overlay.digest(),
            &spec.image.disk_size_mib.to_string(),
            &program_identity(),
        ],
    );

    let raw = opts.out_dir.join(format!("{}.raw", spec.image.name));
    let sha_path = opts.out_dir.join(format!("{}.raw.sha256", spec.image.name));
    let manifest_path = opts
        .out_dir
        .join(format!("{}.manifest.json", spec.image.name));
    let zst = opts.out_dir.join(format!("{}.raw.zst", spec.image.name));
    let record_path = opts.out_dir.join(format!("{}.build.json", spec.image.name));
    let manifest_inner_path = opts.stage_dir.join("manifest.inner.json");

    // A previous build of exactly these inputs whose image is untouched:
    // nothing to do (wait for the agent, whose hash is part of the key).
    // (Not when root.tar is asked for: only a build writes it.)
    if let Some(rec) = BuildRecord::unchanged(&record_path, &raw)
        .filter(|r| r.layer_key == layer_key && !opts.keep_root_tar)
    {
        let agent = steps.time("agent", &mut *join_agent)?;
        let image_key = stage_key("image", &[&layer_key, &sha256_file(&agent)?]);
        let outputs_there = sha_path.is_file()
            && manifest_path.is_file()
            && (!opts.compress || newer_or_same(&zst, &raw));
        if rec.image_key == image_key && outputs_there {
            eprintln!(
                "build-image: {} is up to date (image key {image_key}; size, mtime, ctime and inode as recorded)",
                raw.display()
            );
            eprintln!("{}", steps.summary());
            return Ok(BuildReport {
                image: raw,
                sha256: rec.sha256,
                manifest: manifest_path,
                tailscale,
                allocated_bytes: rec.allocated_bytes,
            });
        }
    }
    // From here on the old image is replaced; its record no longer holds.
    if record_path.exists() {
        fs::remove_file(&record_path)
            .with_context(|| format!("removing {}", record_path.display()))?;
    }
    overlay.add_dir("opt/node", &app.0.root.join("opt/node"))?;
    overlay.add_dir("opt/openclaw", &app.0.root.join("opt/openclaw"))?;

    // Added when the stream reaches their paths: the agent (built
    // meanwhile) and the manifest, which names its hash.
    let mut agent_sha = None;
    let mut late = || -> Result<Overlay> {
        let t = Instant::now();
        let agent = join_agent()?;
        eprintln!(
            "agent: waited {:.1} s for it when the stream reached it",
            t.elapsed().as_secs_f64()
        );
        let sha = sha256_file(&agent)?;
        let mut all = stages.clone();
        all.push(("agent", sha.clone()));
        let inner = manifest(spec, lock, &all, &store, tailscale, &opts.archives, None);
        write_atomic(&manifest_inner_path, inner.as_bytes())?;
        let mut late = Overlay::default();
        late.add_file(appliance::firstboot::BINARY_PATH, &agent, 0o755);
        late.add_file(files::MANIFEST, &manifest_inner_path, 0o644);
        agent_sha = Some(sha);
        Ok(late)
    };

    let root_tar = opts.stage_dir.join("root.tar");
    let keep_root_tar = opts.keep_root_tar;
    if !keep_root_tar && root_tar.exists() {
        // An older build's: it would no longer match this image.
        fs::remove_file(&root_tar)
            .with_context(|| format!("removing the stale {}", root_tar.display()))?;
    }
    let mut entries = 0;
    let mut stream = |out: &mut dyn std::io::Write| -> Result<()> {
        if keep_root_tar {
            let file = fs::File::create(&root_tar)
                .with_context(|| format!("creating {}", root_tar.display()))?;
            let tee = Tee(out, std::io::BufWriter::with_capacity(1 << 20, file));
            let (n, mut tee) = merge_into(&base.0, &overlay, late_entries(&mut late), epoch, tee)?;
            std::io::Write::flush(&mut tee.1)
                .with_context(|| format!("writing {}", root_tar.display()))?;
            entries = n;
        } else {
            entries = merge_into(&base.0, &overlay, late_entries(&mut late), epoch, out)?.0;
        }
        Ok(())
    };
    let report = steps.time("disk", || {
        disk::assemble_from(
            &tools.0,
            disk::RootSource::Stream(&mut stream),
            &lock.disk,
            spec.image.disk_size_mib,
            epoch,
            &raw,
        )
    })?;
    eprintln!("root: {entries} entries streamed into mke2fs");
    let agent_sha = agent_sha.context("the agent was never added to the root")?;
    stages.push(("agent", agent_sha.clone()));
    let image_key = stage_key("image", &[&layer_key, &agent_sha]);
    write_atomic(
        &sha_path,
        format!("{}  {}.raw\n", report.sha256, spec.image.name).as_bytes(),
    )?;
    write_atomic(
        &manifest_path,
        manifest(
            spec,
            lock,
            &stages,
            &store,
            tailscale,
            &opts.archives,
            Some(&report.sha256),
        )
        .as_bytes(),
    )?;
    if opts.compress {
        steps.time("compress", || {
            let tmp = opts
                .out_dir
                .join(format!(".{}.raw.zst.tmp", spec.image.name));
            duct::cmd!("zstd", "-q", "-f", "-T0", "-3", &raw, "-o", &tmp)
                .run()
                .context("compressing the image with zstd")?;
            fs::rename(&tmp, &zst).with_context(|| format!("renaming into {}", zst.display()))
        })?;
    }
    let record = BuildRecord::new(&layer_key, &image_key, &report.sha256, &raw)?;
    write_atomic(
        &record_path,
        serde_json::to_string_pretty(&record)
            .context("serialising the build record")?
            .as_bytes(),
    )?;
    eprintln!("{}", steps.summary());
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

/// The entries made while the root streams: the agent and the manifest.
fn late_entries<'a>(make: &'a mut dyn FnMut() -> Result<Overlay>) -> Late<'a> {
    Late {
        paths: vec![
            appliance::firstboot::BINARY_PATH.into(),
            files::MANIFEST.into(),
        ],
        make,
    }
}

/// Writes to both: the stream into mke2fs and the kept `root.tar`.
struct Tee<'a, F: std::io::Write>(&'a mut dyn std::io::Write, F);

impl<F: std::io::Write> std::io::Write for Tee<'_, F> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_all(buf)?;
        self.1.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()?;
        self.1.flush()
    }
}

fn newer_or_same(path: &Path, than: &Path) -> bool {
    let mtime = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    matches!((mtime(path), mtime(than)), (Some(a), Some(b)) if a >= b)
}

/// The baked config must be valid for the pinned OpenClaw (NET-6). A pass
/// is remembered in the stage directory under the config's hash and the app
/// stage's key (running OpenClaw's validator takes seconds).
fn check_config(
    opts: &BuildOptions,
    spec: &Spec,
    tree: &appliance::Tree,
    app: &(AppTree, String),
) -> Result<()> {
    let user = spec.gateway_user();
    let cfg = tree
        .text(&format!("home/{}/.openclaw/openclaw.json", user.name))
        .context("the appliance layer has no openclaw.json")?;
    let key = stage_key(
        "config-valid",
        &[&hex::encode(Sha256::digest(cfg.as_bytes())), &app.1],
    );
    let marker = opts.stage_dir.join(format!("config-valid-{key}"));
    if marker.is_file() {
        eprintln!("openclaw.json: valid (cached {key})");
        return Ok(());
    }
    let cfg_path = opts.stage_dir.join("openclaw.json");
    write_atomic(&cfg_path, cfg.as_bytes())?;
    crate::npm::validate_config(&app.0, &cfg_path)
        .context("the baked openclaw.json is not valid for the pinned OpenClaw")?;
    write_atomic(&marker, b"valid\n")
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
    // The account of the sandboxes' rootless container daemon (ESC-1); its
    // home, subordinate IDs and units come with the appliance layer.
    {
        use appliance::files::sandbox_runtime::{HOME, UID, USER};
        hooks.push(format!(
            "chroot \"$1\" groupadd --system --gid {UID} {USER} && chroot \"$1\" useradd --system --uid {UID} --gid {UID} --home-dir /{HOME} --no-create-home --shell /usr/sbin/nologin {USER}"
        ));
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
    let config = oci::ImageConfig {
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
    let info = oci::write_image(&rootfs, &config, &archive)?;
    fs::remove_file(&rootfs).with_context(|| format!("removing {}", rootfs.display()))?;
    write_atomic(&id_file, info.image_id.as_bytes())?;
    eprintln!("sandbox image: {} {}", spec.sandbox.image, info.image_id);
    Ok(SandboxStage {
        key,
        archive,
        image_id: info.image_id,
    })
}

/// The sandbox image written as Docker's own image store (AGT-2).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct StoreStage {
    key: String,
    /// The store as a tarball of paths under [`files::DOCKER_ROOT`].
    #[serde(skip)]
    tar: PathBuf,
    image_id: String,
    reference: String,
    chain_id: String,
    cache_id: String,
    diff_size: u64,
}

/// Derives Docker's image store from the sandbox stage's archive. Its own
/// stage (keyed by the sandbox stage and the store format), so a change of
/// the store writer does not re-run the sandbox's mmdebstrap.
fn sandbox_store_stage(
    opts: &BuildOptions,
    spec: &Spec,
    sandbox: &SandboxStage,
) -> Result<StoreStage> {
    let epoch = spec.image.source_date_epoch;
    let ids = sandbox_daemon_ids(spec);
    let key = stage_key(
        "sandbox-store",
        &[
            &sandbox.key,
            oci::STORE_FORMAT,
            files::DOCKER_ROOT,
            &format!("{ids:?}"),
            &epoch.to_string(),
        ],
    );
    let tar = opts.stage_dir.join(format!("sandbox-store-{key}.tar"));
    let info_file = opts.stage_dir.join(format!("sandbox-store-{key}.json"));
    if tar.is_file() && info_file.is_file() {
        let text = fs::read_to_string(&info_file)
            .with_context(|| format!("reading {}", info_file.display()))?;
        let stage: StoreStage = serde_json::from_str(&text).with_context(|| {
            format!(
                "parsing {} (delete it to rebuild the stage)",
                info_file.display()
            )
        })?;
        eprintln!("sandbox store: cached ({key})");
        return Ok(StoreStage { tar, ..stage });
    }
    let info = oci::write_store(
        &sandbox.archive,
        &oci::StoreOptions {
            root: files::DOCKER_ROOT,
            ids: &ids,
            epoch,
        },
        &tar,
    )?;
    if info.image_id != sandbox.image_id {
        bail!(
            "the store written from {} holds image {}, the sandbox stage recorded {}; delete {} and rebuild",
            sandbox.archive.display(),
            info.image_id,
            sandbox.image_id,
            opts.stage_dir.display()
        );
    }
    let stage = StoreStage {
        key,
        tar,
        image_id: info.image_id,
        reference: info.reference,
        chain_id: info.chain_id,
        cache_id: info.cache_id,
        diff_size: info.diff_size,
    };
    write_atomic(
        &info_file,
        serde_json::to_string_pretty(&stage)
            .context("serialising the store stage")?
            .as_bytes(),
    )?;
    eprintln!(
        "sandbox store: {} {} in /{} ({} layer entries, {} bytes)",
        stage.reference,
        stage.image_id,
        files::DOCKER_ROOT,
        info.layer_entries,
        stage.diff_size
    );
    Ok(stage)
}

/// Owners in the sandbox daemon's store: the rootless daemon's user
/// namespace, as the appliance lays it out in `/etc/subuid` and
/// `/etc/subgid` (ESC-1).
fn sandbox_daemon_ids(spec: &Spec) -> oci::IdMap {
    let user = spec.gateway_user();
    let ranges = |host_id| {
        files::sandbox_runtime::id_ranges(host_id)
            .into_iter()
            .map(|r| oci::IdRange {
                inside: r.inside,
                outside: r.outside,
                count: r.count,
            })
            .collect()
    };
    oci::IdMap::new(ranges(user.uid), ranges(user.gid))
}

/// Tailscale compiled from the locked Go modules (`None`: the lock takes
/// the release tarball instead).
fn tailscale_source_stage(
    opts: &BuildOptions,
    lock: &Lock,
    epoch: u64,
) -> Result<Option<(PathBuf, String)>> {
    if lock.tailscale.source != "module" {
        return Ok(None);
    }
    let go = lock
        .tailscale
        .go
        .as_deref()
        .context("image.lock pins no Go toolchain for Tailscale: run `cargo xtask lock`")?;
    let inputs = crate::tailscale::source::key_inputs(&lock.gomods, &lock.tailscale.version, go);
    let key = stage_key(
        "tailscale",
        &inputs.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let modules = crate::gomod::store::ModuleStore::new(&opts.store);
    let dir = crate::tailscale::source::build(&crate::tailscale::source::Stage {
        store: &modules,
        modules: &lock.gomods,
        version: &lock.tailscale.version,
        go,
        key: &key,
        stage_dir: &opts.stage_dir,
        epoch,
    })?;
    Ok(Some((dir, key)))
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
    sandbox: &StoreStage,
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
        // `serve`: first boot (root) points Tailscale Serve at the gateway (TS-2).
        "tailscale": tailscale_manifest(spec, lock, tailscale),
        // A source build's every Go module, as go.sum pins it (SUP-3).
        "go_modules": lock.gomods.iter().map(|m| json!({"path": m.path, "version": m.version, "h1": m.zip, "go_mod_h1": m.go_mod})).collect::<Vec<_>>(),
        // Baked into Docker's image store (no archive, no `docker load`).
        "sandbox_image": {"reference": spec.sandbox.image, "id": sandbox.image_id,
                          "docker_store": {"root": format!("/{}", files::DOCKER_ROOT), "driver": oci::DRIVER,
                                           "layer_chain_id": sandbox.chain_id, "cache_id": sandbox.cache_id,
                                           "diff_size": sandbox.diff_size}},
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

/// The manifest's `tailscale` object: version, source and its pins.
fn tailscale_manifest(spec: &Spec, lock: &Lock, present: bool) -> serde_json::Value {
    let t = &lock.tailscale;
    let mut v = json!({
        "version": t.version,
        "source": t.source,
        "present": present,
        // `serve`: first boot (root) points Tailscale Serve at the gateway (TS-2).
        "serve": present && spec.gateway.tailscale_serve,
        "note": if present { "included" } else { "ABSENT: not in the store at build time; TS-1 and NET-8 cannot hold" },
    });
    if t.source == "module" {
        let main = lock.gomods.iter().find(|m| {
            m.path == image_spec::spec::TAILSCALE_MODULE && m.version == format!("v{}", t.version)
        });
        v["module"] = json!({
            "path": image_spec::spec::TAILSCALE_MODULE,
            "version": format!("v{}", t.version),
            "h1": main.and_then(|m| m.zip.clone()),
            "go_mod_h1": main.map(|m| m.go_mod.clone()),
        });
        v["go_toolchain"] = json!(t.go);
        v["ldflags"] = json!(crate::tailscale::source::ldflags(&t.version));
        v["modules"] = json!(lock.gomods.len());
    } else {
        v["url"] = json!(t.url);
        v["sha256"] = json!(t.sha256);
    }
    v
}

#[cfg(test)]
mod tests {
    #[test]
    fn report_json_shape() {
        let report = super::BuildReport {
            image: "/src/target/image/openclaw-appliance.raw".into(),
            sha256: "cd".repeat(32),
            manifest: "/src/target/image/openclaw-appliance.manifest.json".into(),
            tailscale: true,
            allocated_bytes: 2_147_483_648,
        };
        insta::assert_snapshot!(report.to_json());
    }

    use super::*;

    #[test]
    fn a_record_holds_only_while_the_image_is_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let image = tmp.path().join("x.raw");
        let record = tmp.path().join("x.build.json");
        fs::write(&image, b"image").unwrap();
        let rec = BuildRecord::new("layer", "key", "sha", &image).unwrap();
        fs::write(&record, serde_json::to_string(&rec).unwrap()).unwrap();
        assert_eq!(BuildRecord::unchanged(&record, &image), Some(rec));
        // Rewritten with the same size: mtime/ctime differ.
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(&image, b"IMAGE").unwrap();
        assert_eq!(BuildRecord::unchanged(&record, &image), None);
        fs::remove_file(&image).unwrap();
        assert_eq!(BuildRecord::unchanged(&record, &image), None);
    }

    #[test]
    fn step_summary_is_one_line_of_name_seconds() {
        let dir = tempfile::tempdir().unwrap();
        let progress = Progress::start(&dir.path().join(TIMINGS_FILE));
        let mut steps = Steps::new(&progress);
        steps.time("tools", || Ok(())).unwrap();
        assert!(
            steps
                .summary()
                .starts_with("build-image: step seconds: tools=0.0")
        );
    }
}
