//! The `verify-repro` flow: build the image twice and compare (BOOT-3).
//!
//! Build A and build B run `build-image --offline` as child processes, each
//! in its own directory (`<work>/a`, `<work>/b`) with its own stage cache
//! and output directory; only the verified input store is shared. B runs
//! later (another wall-clock time) with another time zone, locale and
//! umask. Equal sha256 → a record `<name>.repro.json` beside A's image (and
//! in `target/image/` when the image there is the same). Different → the
//! report of [`explain`] (stage, partition, files, metadata).
//! [`Mode::Against`] rebuilds once and compares with a published hash
//! instead; [`Mode::CompareOnly`] explains two kept builds as they are.
//!
//! The child is a copy of the running program, so a concurrent `cargo
//! build` cannot swap the program between the two builds.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use hostutil::sha256_file;

use crate::child::ChildRun;
use crate::{
    Against, AgentCheck, BuildDir, BuildRecord, Published, Record, ReproReport, compare_manifests,
    explain, is_sha256, read_manifest, rfc3339, stage_key,
};

/// What to verify.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Build twice (A and B) and compare.
    Twice,
    /// Build once and compare with a published hash: 64 hex digits, a
    /// manifest or a checksum file ([`Published::parse`]).
    Against(String),
    /// Explain `<work>/a` vs `<work>/b` as a kept run left them.
    CompareOnly,
}

/// Where a build's inputs come from: the `build-image` flags each child
/// gets (`None`: the child's default).
#[derive(Debug, Clone, Default)]
pub struct BuildSources {
    /// The spec file (absolute: the children run elsewhere).
    pub spec: PathBuf,
    /// `--mirror`.
    pub mirror: Option<String>,
    /// `--security-mirror`.
    pub security_mirror: Option<String>,
    /// `--npm-registry`.
    pub npm_registry: Option<String>,
    /// `--store`.
    pub store: Option<PathBuf>,
}

/// Everything one `verify-repro` run needs.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// What to verify.
    pub mode: Mode,
    /// The project root (`target/image/` and `target/build/stages` below it
    /// hold the usual build; the agent is rebuilt from its sources).
    pub root: PathBuf,
    /// The working directory of the builds (`target/repro`).
    pub work: PathBuf,
    /// The image's name (`image.name` of the spec).
    pub name: String,
    /// The spec's `source_date_epoch`.
    pub epoch: u64,
    /// The builds' source flags.
    pub sources: BuildSources,
    /// Keep the builds' directories when the images agree.
    pub keep: bool,
    /// At most this many differences per comparison in an explanation.
    pub max_diffs: usize,
    /// Put the current time into build B (to see a mismatch explained).
    pub inject_nondeterminism: bool,
    /// The `cargo xtask ci` run, recorded in the record.
    pub ci_run: Option<String>,
    /// The CI canary token the builds ran with, recorded in the record.
    pub hcloud_canary: Option<String>,
}

/// What a run found: the report, and why it failed if it did (the caller
/// writes the report first, then fails with the reason).
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The JSON report of `verify-repro --json`.
    pub report: ReproReport,
    /// The error message of a failed check; `None` when it passed.
    pub failure: Option<String>,
}

impl Outcome {
    fn passed(report: ReproReport) -> Outcome {
        Outcome {
            report,
            failure: None,
        }
    }

    fn failed(report: ReproReport, failure: String) -> Outcome {
        Outcome {
            report,
            failure: Some(failure),
        }
    }
}

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

/// Runs `opts.mode`; `say` gets the lines for people (progress goes to
/// stderr). `Err` is a run that could not finish; a mismatch is an
/// [`Outcome`] with a `failure`.
pub fn verify(opts: &VerifyOptions, say: &dyn Fn(&str)) -> Result<Outcome> {
    if let Mode::CompareOnly = opts.mode {
        return compare_existing(opts, say);
    }
    let work = &opts.work;
    let exe = private_exe(work)?;
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
    if opts.inject_nondeterminism {
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

    if let Mode::Against(against) = &opts.mode {
        let published = Published::parse(against)?;
        // The image's apt sources are part of its bytes: rebuild with the
        // publisher's unless the command line names others.
        if let Some((debian, security)) = published.apt_sources() {
            if opts.sources.mirror.is_none() && !b_variant.extra.iter().any(|x| x == "--mirror") {
                eprintln!("verify-repro: --mirror {debian} (from the published manifest)");
                b_variant.extra.extend(["--mirror".into(), debian.into()]);
            }
            if opts.sources.security_mirror.is_none() {
                eprintln!(
                    "verify-repro: --security-mirror {security} (from the published manifest)"
                );
                b_variant
                    .extra
                    .extend(["--security-mirror".into(), security.into()]);
            }
        }
        return check_against(opts, &exe, &published, &b_variant, say);
    }

    for d in ["a", "b"] {
        fresh_dir(&work.join(d))?;
    }
    let a = build(opts, &exe, &work.join("a"), &a_variant)?;
    let b = build(opts, &exe, &work.join("b"), &b_variant)?;
    let agent = agent_check(&opts.root, &work.join("b"), opts.epoch, &a)?;
    let agent_same = agent.identical;
    let identical = a.sha256 == b.sha256;
    let record = Record {
        name: opts.name.clone(),
        sha256: a.sha256.clone(),
        identical: identical && agent_same,
        builds: vec![a.record.clone(), b.record.clone()],
        against: None,
        agent_check: Some(agent.clone()),
        date: rfc3339(SystemTime::now()),
        source_date_epoch: opts.epoch,
        ci_run: opts.ci_run.clone(),
        hcloud_canary: opts.hcloud_canary.clone(),
    };
    let written = write_records(&record, &a.image, &opts.root, &opts.name)?;
    say(&format!(
        "build a:  {}  ({})",
        a.sha256,
        describe(&a.record)
    ));
    say(&format!(
        "build b:  {}  ({})",
        b.sha256,
        describe(&b.record)
    ));
    say(&format!("agent:    {}", agent.summary()));
    for w in &written {
        say(&format!("record:   {}", w.display()));
    }
    let mut report = ReproReport {
        identical: record.identical,
        record: Some(record),
        written,
        ..ReproReport::default()
    };
    if identical {
        if !opts.keep {
            cleanup(&[a.stage_dir.clone(), b.dir.clone()]);
        }
        if !agent_same {
            return Ok(Outcome::failed(
                report,
                "the images are identical but the first-boot agent rebuilt in another directory is not (see `agent` above)"
                    .into(),
            ));
        }
        say(&format!("identical: {}", a.sha256));
        return Ok(Outcome::passed(report));
    }
    eprintln!(
        "verify-repro: the images differ; explaining (builds kept in {})",
        work.display()
    );
    let diverged = explain_into(&a.build_dir("A"), &b.build_dir("B"), opts, &mut report, say)?;
    Ok(Outcome::failed(
        report,
        format!(
            "the two builds differ ({} vs {}); first diverging stage: {diverged}",
            a.sha256, b.sha256
        ),
    ))
}

/// Explains how `b` differs from `a` ([`explain`]): says each line, adds
/// them to `report`, and returns the first diverging stage for a message.
fn explain_into(
    a: &BuildDir,
    b: &BuildDir,
    opts: &VerifyOptions,
    report: &mut ReproReport,
    say: &dyn Fn(&str),
) -> Result<String> {
    let ex = explain(a, b, &opts.work.join("scratch"), opts.max_diffs)?;
    for l in &ex.lines {
        say(l);
    }
    report.explained(&ex);
    Ok(ex
        .first_diverged
        .unwrap_or_else(|| "none found (the disk stage itself)".into()))
}

/// [`Mode::CompareOnly`]: explain `<work>/a` vs `<work>/b` as they are.
fn compare_existing(opts: &VerifyOptions, say: &dyn Fn(&str)) -> Result<Outcome> {
    let (work, name) = (&opts.work, &opts.name);
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
    say(&format!("a: {ha}\nb: {hb}"));
    let mut report = ReproReport {
        identical: ha == hb,
        ..ReproReport::default()
    };
    if ha == hb {
        say(&format!("identical: {ha}"));
        return Ok(Outcome::passed(report));
    }
    let diverged = explain_into(&a, &b, opts, &mut report, say)?;
    Ok(Outcome::failed(
        report,
        format!("the two builds differ; first diverging stage: {diverged}"),
    ))
}

/// [`Mode::Against`]: one fresh build compared with a published hash.
fn check_against(
    opts: &VerifyOptions,
    exe: &Path,
    published: &Published,
    variant: &Variant,
    say: &dyn Fn(&str),
) -> Result<Outcome> {
    let (root, work, name) = (&opts.root, &opts.work, &opts.name);
    let dir = work.join("check");
    fresh_dir(&dir)?;
    let variant = Variant {
        label: "check",
        ..variant.clone()
    };
    let built = build(opts, exe, &dir, &variant)?;
    let identical = built.sha256 == published.sha256();
    let record = Record {
        name: name.clone(),
        sha256: built.sha256.clone(),
        identical,
        builds: vec![built.record.clone()],
        against: Some(Against {
            sha256: published.sha256().to_string(),
            source: published.source(),
            file_sha256: published.file_sha256(),
        }),
        agent_check: None,
        date: rfc3339(SystemTime::now()),
        source_date_epoch: opts.epoch,
        ci_run: opts.ci_run.clone(),
        hcloud_canary: opts.hcloud_canary.clone(),
    };
    let written = write_records(&record, &built.image, root, name)?;
    say(&format!(
        "published: {}  (from {})",
        published.sha256(),
        published.source()
    ));
    say(&format!(
        "rebuilt:   {}  ({})",
        built.sha256,
        describe(&built.record)
    ));
    for w in &written {
        say(&format!("record:    {}", w.display()));
    }
    let mut report = ReproReport {
        identical,
        record: Some(record),
        written,
        ..ReproReport::default()
    };
    if identical {
        if !opts.keep {
            cleanup(std::slice::from_ref(&built.stage_dir));
        }
        say(&format!("identical: {}", built.sha256));
        return Ok(Outcome::passed(report));
    }
    if let Published::File {
        manifest: Some(m), ..
    } = published
    {
        let rebuilt = read_manifest(&built.manifest)?;
        let d = compare_manifests(m, &rebuilt);
        if d.is_empty() {
            say(
                "the manifests agree on every input and stage key: the difference is in how a stage ran",
            );
        } else {
            say("the manifests differ:");
            for l in &d {
                say(&format!("  {l}"));
            }
        }
        report.manifest_differences = d;
    }
    // A local build of the published bytes (the usual case for the
    // publisher) can be compared file by file.
    let std_image = root.join("target/image").join(format!("{name}.raw"));
    let std_stages = root.join("target/build/stages");
    if std_image.is_file() && sha256_file(&std_image)? == published.sha256() {
        say("target/image holds the published image: comparing with its build");
        let local = BuildDir {
            label: "published".into(),
            stage_dir: std_stages,
            image: std_image,
            manifest: root
                .join("target/image")
                .join(format!("{name}.manifest.json")),
        };
        explain_into(&local, &built.build_dir("rebuilt"), opts, &mut report, say)?;
    }
    Ok(Outcome::failed(
        report,
        format!(
            "the rebuilt image {} is not the published {}",
            built.sha256,
            published.sha256()
        ),
    ))
}

/// Runs one `build-image` child in `dir` with `v`'s environment.
fn build(opts: &VerifyOptions, exe: &Path, dir: &Path, v: &Variant) -> Result<Built> {
    let name = &opts.name;
    let stage_dir = dir.join("stages");
    let out_dir = dir.join("image");
    let sources = &opts.sources;
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
        sources.spec.clone().into(),
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
    let expr = duct::cmd("sh", &argv)
        .env("TZ", v.tz)
        .env("LC_ALL", &v.lc_all)
        .env("LANG", &v.lc_all)
        .env_remove("SOURCE_DATE_EPOCH")
        .stdin_null();
    let child = ChildRun::start(&expr, "the build-image child")?;
    let mut tail = std::collections::VecDeque::new();
    let done = child.finish(|_, text| {
        writeln!(log, "{text}").with_context(|| format!("writing {}", log_path.display()))?;
        eprintln!("  [{}] {text}", v.label);
        if tail.len() == 20 {
            tail.pop_front();
        }
        tail.push_back(text);
        Ok(())
    })?;
    if !done.status.success() {
        bail!(
            "build {} failed ({}); its output ends with:\n{}\nfull log: {}",
            v.label,
            done.status,
            Vec::from(tail).join("\n"),
            log_path.display()
        );
    }
    let seconds = done.seconds as u64;
    let image = out_dir.join(format!("{name}.raw"));
    let sha_file = out_dir.join(format!("{name}.raw.sha256"));
    let sha256 = fs::read_to_string(&sha_file)
        .with_context(|| format!("reading {}", sha_file.display()))?
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    if !is_sha256(&sha256) {
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
            started: rfc3339(started_at),
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
    let want = stage_key(&a.manifest, "agent")?.unwrap_or_default();
    let copy = dir.join("src");
    eprintln!(
        "verify-repro: rebuilding the first-boot agent from a copy of the sources in {}",
        copy.display()
    );
    crate::agent_check(root, &copy, epoch, &want)
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
