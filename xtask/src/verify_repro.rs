//! `cargo xtask verify-repro`: build the image twice and compare (BOOT-3).
//!
//! Build A and build B run `build-image --offline` as child processes, each
//! in its own directory (`target/repro/a`, `target/repro/b`) with its own
//! stage cache and output directory; only the verified input store is
//! shared. B runs later (another wall-clock time) with another time zone,
//! locale and umask. Equal sha256 → a record `<name>.repro.json` beside A's
//! image (and in `target/image/` when the image there is the same), exit 0.
//! Different → the report of `builder::repro::explain` (stage, partition,
//! files, metadata), exit 1. `--against` rebuilds once and compares with a
//! published hash instead.
//!
//! The child is a copy of this very binary, so a concurrent `cargo build`
//! cannot swap the program between the two builds.

use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use builder::repro::{
    self, Against, AgentCheck, BuildDir, BuildRecord, Published, Record, ReproReport,
};
use hostutil::sha256_file;

use vm_tests::suite::rebuild::{CI_RUN_ENV, HCLOUD_CANARY_PREFIX};

use crate::flags::VerifyReproArgs;
use crate::output::{Out, say};
use crate::sources::{open_store, project};

/// The environment one build runs in.
#[derive(Clone)]
struct Variant {
    label: &'static str,
    tz: &'static str,
    lc_all: String,
    umask: &'static str,
    /// Extra `build-image` arguments (the injected non-determinism).
    extra: Vec<OsString>,
}

/// What one build left.
struct Built {
    dir: PathBuf,
    stage_dir: PathBuf,
    image: PathBuf,
    manifest: PathBuf,
    sha256: String,
    record: BuildRecord,
}

impl Built {
    fn build_dir(&self, label: &str) -> BuildDir {
        BuildDir {
            label: label.into(),
            stage_dir: self.stage_dir.clone(),
            image: self.image.clone(),
            manifest: self.manifest.clone(),
        }
    }
}

pub fn run(args: &VerifyReproArgs) -> Result<()> {
    let out = Out::new(args.fetch.json)?;
    let root = crate::project_root();
    let sources = &args.fetch.sources;
    let store = open_store(sources)?;
    let project = project(sources);
    let spec = project.read_spec()?;
    let name = spec.image.name.clone();
    let epoch = spec.image.source_date_epoch;
    let work = match &args.dir {
        Some(d) if d.is_absolute() => d.clone(),
        Some(d) => root.join(d),
        None => root.join("target/repro"),
    };
    if args.compare_only {
        return compare_existing(out, &work, &name, args.max_diffs);
    }
    if !args.no_doctor {
        let target = root.join("target");
        builder::doctor::ensure(&[store.root(), target.as_path()], true)?;
    }
    if !args.offline {
        crate::fetch::fetch_step(&args.fetch, out)?;
    }
    let exe = private_exe(&work)?;
    let a_variant = Variant {
        label: "a",
        tz: "UTC",
        lc_all: "C.UTF-8".into(),
        umask: "022",
        extra: Vec::new(),
    };
    // B: a time zone 12:45 east of UTC (POSIX form, needs no tzdata), the
    // plain ASCII locale (or another installed one), a umask that hides
    // group and other bits, and a later wall-clock time.
    let mut b_variant = Variant {
        label: "b",
        tz: "<+1245>-12:45",
        lc_all: other_locale(),
        umask: "077",
        extra: Vec::new(),
    };
    if args.inject_nondeterminism {
        // The current time into one file of a late stage: the apt sources
        // of the appliance layer (written from --mirror, nothing else uses
        // it in an offline build).
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let url = format!("http://injected-nondeterminism.invalid/{now}/debian");
        eprintln!("verify-repro: INJECTING non-determinism into build b: --mirror {url}");
        b_variant.extra = vec!["--mirror".into(), url.into()];
    }

    if let Some(against) = &args.against {
        let published = Published::parse(against)?;
        // The image's apt sources are part of its bytes: rebuild with the
        // publisher's unless the command line names others.
        if let Some((debian, security)) = published.apt_sources() {
            if sources.mirror.is_none() && !b_variant.extra.iter().any(|x| x == "--mirror") {
                eprintln!("verify-repro: --mirror {debian} (from the published manifest)");
                b_variant.extra.extend(["--mirror".into(), debian.into()]);
            }
            if sources.security_mirror.is_none() {
                eprintln!(
                    "verify-repro: --security-mirror {security} (from the published manifest)"
                );
                b_variant
                    .extra
                    .extend(["--security-mirror".into(), security.into()]);
            }
        }
        return check_against(
            out, args, &root, &work, &exe, &name, epoch, &published, &b_variant,
        );
    }

    for d in ["a", "b"] {
        fresh_dir(&work.join(d))?;
    }
    let a = build(args, &exe, &work.join("a"), &name, &a_variant)?;
    let b = build(args, &exe, &work.join("b"), &name, &b_variant)?;
    let agent = agent_check(&root, &work.join("b"), epoch, &a)?;
    let agent_same = agent.identical;
    let identical = a.sha256 == b.sha256;
    let record = Record {
        name: name.clone(),
        sha256: a.sha256.clone(),
        identical: identical && agent_same,
        builds: vec![a.record.clone(), b.record.clone()],
        against: None,
        agent_check: Some(agent.clone()),
        date: repro::rfc3339(SystemTime::now()),
        source_date_epoch: epoch,
        ci_run: std::env::var(CI_RUN_ENV).ok(),
        hcloud_canary: hcloud_canary(),
    };
    let written = write_records(&record, &a.image, &root, &name)?;
    say!(out, "build a:  {}  ({})", a.sha256, describe(&a.record));
    say!(out, "build b:  {}  ({})", b.sha256, describe(&b.record));
    say!(out, "agent:    {}", agent.summary());
    for w in &written {
        say!(out, "record:   {}", w.display());
    }
    let mut report = ReproReport {
        identical: record.identical,
        record: Some(record),
        written,
        ..ReproReport::default()
    };
    if identical {
        if !args.keep {
            cleanup(&[a.stage_dir.clone(), b.dir.clone()]);
        }
        out.report(&report.to_json())?;
        if !agent_same {
            bail!(
                "the images are identical but the first-boot agent rebuilt in another directory is not (see `agent` above)"
            );
        }
        say!(out, "identical: {}", a.sha256);
        return Ok(());
    }
    eprintln!(
        "verify-repro: the images differ; explaining (builds kept in {})",
        work.display()
    );
    let ex = repro::explain(
        &a.build_dir("A"),
        &b.build_dir("B"),
        &work.join("scratch"),
        args.max_diffs,
    )?;
    for l in &ex.lines {
        say!(out, "{l}");
    }
    report.explained(&ex);
    out.report(&report.to_json())?;
    bail!(
        "the two builds differ ({} vs {}); first diverging stage: {}",
        a.sha256,
        b.sha256,
        ex.first_diverged
            .as_deref()
            .unwrap_or("none found (the disk stage itself)")
    )
}

/// `--compare-only`: explain `<work>/a` vs `<work>/b` as they are.
fn compare_existing(out: Out, work: &Path, name: &str, limit: usize) -> Result<()> {
    let side = |d: &str| {
        let dir = work.join(d);
        BuildDir {
            label: d.to_uppercase(),
            stage_dir: dir.join("stages"),
            image: dir.join("image").join(format!("{name}.raw")),
            manifest: dir.join("image").join(format!("{name}.manifest.json")),
        }
    };
    let (a, b) = (side("a"), side("b"));
    for x in [&a, &b] {
        if !x.image.is_file() {
            bail!(
                "{} does not exist: run verify-repro with --keep first",
                x.image.display()
            );
        }
    }
    let (ha, hb) = (sha256_file(&a.image)?, sha256_file(&b.image)?);
    say!(out, "a: {ha}\nb: {hb}");
    let mut report = ReproReport {
        identical: ha == hb,
        ..ReproReport::default()
    };
    if ha == hb {
        out.report(&report.to_json())?;
        say!(out, "identical: {ha}");
        return Ok(());
    }
    let ex = repro::explain(&a, &b, &work.join("scratch"), limit)?;
    for l in &ex.lines {
        say!(out, "{l}");
    }
    report.explained(&ex);
    out.report(&report.to_json())?;
    bail!(
        "the two builds differ; first diverging stage: {}",
        ex.first_diverged
            .as_deref()
            .unwrap_or("none found (the disk stage itself)")
    )
}

/// `--against`: one fresh build compared with a published hash.
#[allow(clippy::too_many_arguments)]
fn check_against(
    out: Out,
    args: &VerifyReproArgs,
    root: &Path,
    work: &Path,
    exe: &Path,
    name: &str,
    epoch: u64,
    published: &Published,
    variant: &Variant,
) -> Result<()> {
    let dir = work.join("check");
    fresh_dir(&dir)?;
    let variant = Variant {
        label: "check",
        ..variant.clone()
    };
    let built = build(args, exe, &dir, name, &variant)?;
    let identical = built.sha256 == published.sha256();
    let record = Record {
        name: name.into(),
        sha256: built.sha256.clone(),
        identical,
        builds: vec![built.record.clone()],
        against: Some(Against {
            sha256: published.sha256().to_string(),
            source: published.source(),
            file_sha256: published.file_sha256(),
        }),
        agent_check: None,
        date: repro::rfc3339(SystemTime::now()),
        source_date_epoch: epoch,
        ci_run: std::env::var(CI_RUN_ENV).ok(),
        hcloud_canary: hcloud_canary(),
    };
    let written = write_records(&record, &built.image, root, name)?;
    say!(
        out,
        "published: {}  (from {})",
        published.sha256(),
        published.source()
    );
    say!(
        out,
        "rebuilt:   {}  ({})",
        built.sha256,
        describe(&built.record)
    );
    for w in &written {
        say!(out, "record:    {}", w.display());
    }
    let mut report = ReproReport {
        identical,
        record: Some(record),
        written,
        ..ReproReport::default()
    };
    if identical {
        if !args.keep {
            cleanup(std::slice::from_ref(&built.stage_dir));
        }
        out.report(&report.to_json())?;
        say!(out, "identical: {}", built.sha256);
        return Ok(());
    }
    if let Published::File {
        manifest: Some(m), ..
    } = published
    {
        let rebuilt = repro::read_manifest(&built.manifest)?;
        let d = repro::compare_manifests(m, &rebuilt);
        if d.is_empty() {
            say!(
                out,
                "the manifests agree on every input and stage key: the difference is in how a stage ran"
            );
        } else {
            say!(out, "the manifests differ:");
            for l in &d {
                say!(out, "  {l}");
            }
        }
        report.manifest_differences = d;
    }
    // A local build of the published bytes (the usual case for the
    // publisher) can be compared file by file.
    let std_image = root.join("target/image").join(format!("{name}.raw"));
    let std_stages = root.join("target/build/stages");
    if std_image.is_file() && sha256_file(&std_image)? == published.sha256() {
        say!(
            out,
            "target/image holds the published image: comparing with its build"
        );
        let local = BuildDir {
            label: "published".into(),
            stage_dir: std_stages,
            image: std_image,
            manifest: root
                .join("target/image")
                .join(format!("{name}.manifest.json")),
        };
        let ex = repro::explain(
            &local,
            &built.build_dir("rebuilt"),
            &work.join("scratch"),
            args.max_diffs,
        )?;
        for l in &ex.lines {
            say!(out, "{l}");
        }
        report.explained(&ex);
    }
    out.report(&report.to_json())?;
    bail!(
        "the rebuilt image {} is not the published {}",
        built.sha256,
        published.sha256()
    )
}

/// Runs one `build-image` child in `dir` with `v`'s environment.
fn build(args: &VerifyReproArgs, exe: &Path, dir: &Path, name: &str, v: &Variant) -> Result<Built> {
    let stage_dir = dir.join("stages");
    let out_dir = dir.join("image");
    let sources = &args.fetch.sources;
    let spec = if sources.spec.is_absolute() {
        sources.spec.clone()
    } else {
        crate::project_root().join(&sources.spec)
    };
    let mut argv: Vec<OsString> = vec![
        "-c".into(),
        // umask from $1, then the build as argv: nothing is interpolated.
        "umask \"$1\" && shift && exec \"$@\"".into(),
        "sh".into(),
        v.umask.into(),
        exe.into(),
        "build-image".into(),
        "--offline".into(),
        "--no-doctor".into(),
        "--keep-root-tar".into(),
        "--spec".into(),
        spec.into(),
        "--out".into(),
        out_dir.clone().into(),
        "--stage-dir".into(),
        stage_dir.clone().into(),
    ];
    let opt = |flag: &str, v: &Option<String>| -> Vec<OsString> {
        v.iter().flat_map(|x| [flag.into(), x.into()]).collect()
    };
    if !v.extra.iter().any(|x| x == "--mirror") {
        argv.extend(opt("--mirror", &sources.mirror));
    }
    argv.extend(opt("--security-mirror", &sources.security_mirror));
    argv.extend(opt("--npm-registry", &sources.npm_registry));
    if let Some(s) = &sources.store {
        argv.push("--store".into());
        argv.push(s.clone().into());
    }
    argv.extend(v.extra.iter().cloned());
    let log_path = dir.join("build.log");
    let mut log =
        fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    eprintln!(
        "verify-repro: build {} in {} (TZ={} LC_ALL={} umask {}); log {}",
        v.label,
        dir.display(),
        v.tz,
        v.lc_all,
        v.umask,
        log_path.display()
    );
    let started_at = SystemTime::now();
    let started = Instant::now();
    let reader = duct::cmd("sh", &argv)
        .env("TZ", v.tz)
        .env("LC_ALL", &v.lc_all)
        .env("LANG", &v.lc_all)
        .env_remove("SOURCE_DATE_EPOCH")
        .stderr_to_stdout()
        .stdin_null()
        .unchecked()
        .reader()
        .context("starting the build-image child")?;
    let mut tail = std::collections::VecDeque::new();
    for line in BufReader::new(&reader).split(b'\n') {
        let line = line.context("reading the build's output")?;
        let text = String::from_utf8_lossy(&line);
        writeln!(log, "{text}").with_context(|| format!("writing {}", log_path.display()))?;
        eprintln!("  [{}] {text}", v.label);
        if tail.len() == 20 {
            tail.pop_front();
        }
        tail.push_back(text.into_owned());
    }
    let out = reader
        .try_wait()
        .context("waiting for the build")?
        .context("the build is still running after closing its output")?;
    if !out.status.success() {
        bail!(
            "build {} failed ({}); its output ends with:\n{}\nfull log: {}",
            v.label,
            out.status,
            Vec::from(tail).join("\n"),
            log_path.display()
        );
    }
    let seconds = started.elapsed().as_secs();
    let image = out_dir.join(format!("{name}.raw"));
    let sha_file = out_dir.join(format!("{name}.raw.sha256"));
    let sha256 = fs::read_to_string(&sha_file)
        .with_context(|| format!("reading {}", sha_file.display()))?
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    if !repro::is_sha256(&sha256) {
        bail!("{} holds no sha256", sha_file.display());
    }
    eprintln!(
        "verify-repro: build {} done in {seconds} s: {sha256}",
        v.label
    );
    Ok(Built {
        dir: dir.to_path_buf(),
        stage_dir,
        manifest: out_dir.join(format!("{name}.manifest.json")),
        image,
        sha256: sha256.clone(),
        record: BuildRecord {
            dir: dir.display().to_string(),
            sha256,
            started: repro::rfc3339(started_at),
            seconds,
            tz: v.tz.into(),
            lc_all: v.lc_all.clone(),
            umask: v.umask.into(),
        },
    })
}

/// Rebuilds the first-boot agent from a copy of the sources in `dir/src`
/// (`build-image` caches it in `target/agent`, shared by both builds).
fn agent_check(root: &Path, dir: &Path, epoch: u64, a: &Built) -> Result<AgentCheck> {
    let want = repro::stage_key(&a.manifest, "agent")?.unwrap_or_default();
    let copy = dir.join("src");
    eprintln!(
        "verify-repro: rebuilding the first-boot agent from a copy of the sources in {}",
        copy.display()
    );
    repro::agent_check(root, &copy, epoch, &want)
}

/// Writes `record` beside `image`, and into `target/image/` when the image
/// there has the same sha256 (vm-test's BOOT-3 reads it there).
fn write_records(record: &Record, image: &Path, root: &Path, name: &str) -> Result<Vec<PathBuf>> {
    let mut out = vec![record.write_beside(image)?];
    let std_image = root.join("target/image").join(format!("{name}.raw"));
    if std_image.is_file() && std_image != image {
        // Beside the image it describes: the same bytes, or (`--against`
        // its manifest) the image it was meant to reproduce, so that
        // vm-test's BOOT-3 sees a mismatch as one.
        let sha = sha256_file(&std_image)?;
        if sha == record.sha256 || record.against.as_ref().is_some_and(|a| a.sha256 == sha) {
            out.push(record.write_beside(&std_image)?);
        }
    }
    Ok(out)
}

/// The CI canary in `HCLOUD_TOKEN`, if that is what it holds (a real
/// token is never returned, so never recorded).
fn hcloud_canary() -> Option<String> {
    std::env::var("HCLOUD_TOKEN")
        .ok()
        .filter(|t| t.starts_with(HCLOUD_CANARY_PREFIX))
}

/// A copy of the running program under `work`, run for both builds.
fn private_exe(work: &Path) -> Result<PathBuf> {
    let me = std::env::current_exe().context("finding the running program")?;
    let bin = work.join("bin");
    fs::create_dir_all(&bin).with_context(|| format!("creating {}", bin.display()))?;
    let dest = bin.join("xtask");
    let tmp = bin.join(".xtask.tmp");
    fs::copy(&me, &tmp)
        .with_context(|| format!("copying {} to {}", me.display(), tmp.display()))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("setting the mode of {}", tmp.display()))?;
    fs::rename(&tmp, &dest).with_context(|| format!("renaming into {}", dest.display()))?;
    Ok(dest)
}

/// Removes `dir` if present and creates it empty.
fn fresh_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

fn cleanup(dirs: &[PathBuf]) {
    for d in dirs {
        if let Err(e) = fs::remove_dir_all(d) {
            eprintln!("verify-repro: could not remove {}: {e}", d.display());
        }
    }
}

/// An installed locale other than C.UTF-8, else `POSIX` (plain ASCII).
fn other_locale() -> String {
    let listed = duct::cmd!("locale", "-a")
        .stdout_capture()
        .stderr_null()
        .unchecked()
        .run()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    listed
        .lines()
        .map(str::trim)
        .find(|l| {
            let l = l.to_ascii_lowercase();
            !matches!(l.as_str(), "c" | "c.utf8" | "c.utf-8" | "posix" | "")
        })
        .map(str::to_string)
        .unwrap_or_else(|| "POSIX".into())
}

fn describe(b: &BuildRecord) -> String {
    format!(
        "{}, started {}, {} s, TZ={} LC_ALL={} umask {}",
        b.dir, b.started, b.seconds, b.tz, b.lc_all, b.umask
    )
}
