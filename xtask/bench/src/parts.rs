//! The parts of the bench, in the order they run: fetch (untimed), floor,
//! cold build, no-op rebuild, sizes, warm rebuild, vm-test.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use builder::rootfs::bootstrap::{self, Bootstrap};
use builder::rootfs::repo::LocalRepo;
use sha2::{Digest, Sha256};

use crate::measure::{self, MEMORY_METHOD, Timed};
use crate::report::{Figure, Goal, Status, judge, markdown};
use crate::{Bench, Machine, Options, Part};

/// The appliance file the warm rebuild edits, and the text it extends: a
/// comment in a rendered unit, so the image changes.
pub const WARM_FILE: &str = "appliance/src/files/units.rs";
/// See [`WARM_FILE`].
pub const WARM_MARKER: &str =
    "# AGT-2: the sandbox image is baked into Docker's image store, never loaded";

const MB: f64 = 1e6;
const TCG_NOTE: &str = "vm-test takes about 50 min per firmware under TCG here";

/// The bench's directories and state.
struct Ctx<'a> {
    opts: &'a Options,
    dir: PathBuf,
    stages: PathBuf,
    out: PathBuf,
    log: PathBuf,
    /// Whether an image of the current sources is in `out` (built this run).
    built: bool,
}

impl Ctx<'_> {
    fn xtask(&self, task: &str, extra: &[OsString]) -> Vec<OsString> {
        let mut argv: Vec<OsString> = vec!["xtask".into(), task.into()];
        argv.extend(extra.iter().cloned());
        argv
    }

    fn build_args(&self) -> Vec<OsString> {
        let mut argv = self.xtask(
            "build-image",
            &[
                "--offline".into(),
                "--no-doctor".into(),
                "--stage-dir".into(),
                self.stages.clone().into(),
                "--out".into(),
                self.out.clone().into(),
            ],
        );
        argv.extend(self.opts.source_args.iter().cloned());
        argv
    }

    /// One timed `cargo xtask build-image`; fails with its output's tail.
    fn build(&mut self, label: &str) -> Result<Timed> {
        let t = measure::run(
            &self.opts.cargo,
            &self.build_args(),
            &self.opts.root,
            label,
            &self.log,
        )?;
        if !t.success {
            bail!(
                "{label}: `cargo xtask build-image` failed ({}); its output is in {}:\n{}",
                t.status,
                self.log.display(),
                t.tail(30)
            );
        }
        self.built = true;
        Ok(t)
    }

    /// Makes sure `out` holds an image of the current sources (untimed).
    fn prime(&mut self) -> Result<()> {
        if !self.built {
            self.build("prime (untimed)")?;
        }
        Ok(())
    }

    fn image_name(&self) -> Result<String> {
        Ok(self.opts.project.read_spec()?.image.name)
    }
}

/// Runs the selected parts and returns the results; writes
/// `target/bench/bench.json` and `target/bench/table.md`.
pub fn run(opts: &Options) -> Result<Bench> {
    let dir = opts.root.join("target/bench");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let log = dir.join("bench.log");
    fs::write(&log, "").with_context(|| format!("writing {}", log.display()))?;
    restore_interrupted(opts, &dir)?;
    let mut cx = Ctx {
        opts,
        stages: dir.join("stages"),
        out: dir.join("image"),
        log,
        dir,
        built: false,
    };
    let date = repro::rfc3339(std::time::SystemTime::now());
    let load_start = load();
    let wanted = |p: Part| opts.parts.contains(&p);
    let mut figures = Vec::new();
    let mut notes = vec![format!("peak memory: {MEMORY_METHOD}")];

    // The parts that build need the store filled; vm-test and ci do not.
    if [Part::Floor, Part::Build, Part::Noop, Part::Size, Part::Warm]
        .into_iter()
        .any(wanted)
    {
        let mut argv = cx.xtask("fetch", &[]);
        argv.extend(opts.source_args.iter().cloned());
        let t = measure::run(&opts.cargo, &argv, &opts.root, "fetch (untimed)", &cx.log)?;
        if !t.success {
            bail!(
                "`cargo xtask fetch` failed ({}): the bench needs the store filled:\n{}",
                t.status,
                t.tail(20)
            );
        }
        notes.push(
            "builds run `build-image --offline --no-doctor` after an untimed `fetch` \
             (without --offline, build-image runs fetch first: it re-verifies the store and asks the network)"
                .into(),
        );
    }

    let floor = if wanted(Part::Floor) {
        Some(floor(&cx)?)
    } else {
        None
    };
    let cold = if wanted(Part::Build) {
        for d in [cx.stages.clone(), opts.root.join("target/agent")] {
            if d.exists() {
                fs::remove_dir_all(&d).with_context(|| format!("removing {}", d.display()))?;
            }
        }
        Some(cx.build("cold build")?)
    } else {
        None
    };
    match (&cold, &floor) {
        (Some(c), _) => figures.push(
            Figure::measured(
                "cold_build_s",
                "cold build (empty stage cache)",
                "s",
                vec![c.seconds],
            )
            .detail(steps(c)),
        ),
        (None, _) => figures.push(not_selected(
            "cold_build_s",
            "cold build (empty stage cache)",
            "s",
            "build",
        )),
    }
    match &floor {
        Some((secs, detail)) => figures.push(
            Figure::measured(
                "floor_s",
                "floor: bare mmdebstrap, host packages",
                "s",
                vec![*secs],
            )
            .detail(detail.clone()),
        ),
        None => figures.push(not_selected(
            "floor_s",
            "floor: bare mmdebstrap, host packages",
            "s",
            "floor",
        )),
    }
    let ratio = Figure::measured(
        "cold_over_floor",
        "cold build / floor",
        "×",
        match (&cold, &floor) {
            (Some(c), Some((f, _))) if *f > 0.0 => vec![c.seconds / f],
            _ => Vec::new(),
        },
    )
    .goal(Goal::AtMost { limit: 2.5 });
    figures.push(if ratio.value.is_some() {
        ratio
    } else {
        Figure {
            status: Status::NotMeasured("needs both `build` and `floor`".into()),
            ..ratio
        }
    });

    let noop_goal = Goal::AtMost { limit: 3.0 };
    if wanted(Part::Noop) {
        cx.prime()?;
        let mut runs = Vec::new();
        let mut last = None;
        for n in 1..=opts.runs {
            let t = cx.build(&format!("no-op rebuild {n}/{}", opts.runs))?;
            runs.push(t.seconds);
            last = Some(t);
        }
        let detail = last.as_ref().map(steps).unwrap_or_default();
        figures.push(
            Figure::measured("noop_rebuild_s", "no-op rebuild", "s", runs)
                .goal(noop_goal)
                .detail(detail),
        );
    } else {
        figures.push(not_selected("noop_rebuild_s", "no-op rebuild", "s", "noop").goal(noop_goal));
    }

    if wanted(Part::Size) {
        cx.prime()?;
        figures.extend(sizes(&cx)?);
    } else {
        for (id, name) in SIZE_FIGURES {
            let f = not_selected(id, name, "MB", "size");
            figures.push(if id == "image_zstd_mb" {
                f.goal(Goal::AtMost { limit: 900.0 })
            } else {
                f
            });
        }
    }

    let warm_goals = [
        Goal::AtMost { limit: 45.0 },
        Goal::AtMostTimes {
            times: 0.1,
            of: "cold_build_s",
        },
    ];
    let mut warm_runs: Vec<Timed> = Vec::new();
    if wanted(Part::Warm) {
        cx.prime()?;
        for n in 1..=opts.runs {
            let edit = Restore::edit(opts, &cx.dir, n)?;
            let t = cx.build(&format!(
                "warm rebuild {n}/{} ({WARM_FILE} changed)",
                opts.runs
            ));
            drop(edit);
            warm_runs.push(t?);
        }
        // The image in `out` now holds an edit that is gone.
        cx.built = false;
        let mut f = Figure::measured(
            "warm_rebuild_s",
            "warm rebuild (one appliance file changed)",
            "s",
            warm_runs.iter().map(|t| t.seconds).collect(),
        );
        f.goals.extend(warm_goals);
        let mid = warm_runs
            .iter()
            .min_by(|a, b| {
                let m = f.value.unwrap_or(0.0);
                (a.seconds - m).abs().total_cmp(&(b.seconds - m).abs())
            })
            .map(steps)
            .unwrap_or_default();
        figures.push(f.detail(format!("median run: {mid}")));
    } else {
        let mut f = not_selected(
            "warm_rebuild_s",
            "warm rebuild (one appliance file changed)",
            "s",
            "warm",
        );
        f.goals.extend(warm_goals);
        figures.push(f);
    }

    let accel = vm_tests::accel::choose(Path::new("qemu-system-x86_64"))
        .map(|c| format!("{} ({})", c.accel, c.reason))
        .unwrap_or_else(|e| format!("unknown ({e:#})"));
    let kvm = accel.starts_with("kvm");
    for fw in &opts.firmwares {
        figures.extend(vm_test(&mut cx, fw, wanted(Part::VmTest), kvm)?);
    }
    if wanted(Part::Ci) {
        figures.extend(crate::ci::figures(
            crate::ci::CiTimings::read(&opts.root)?.as_ref(),
        ));
    }

    let peak = match (&cold, warm_runs.iter().map(|t| t.peak_rss_bytes).max()) {
        (Some(c), _) => Figure::measured(
            "peak_memory_mb",
            "peak memory of the build (cold)",
            "MB",
            vec![c.peak_rss_bytes as f64 / MB],
        ),
        (None, Some(w)) => Figure::measured(
            "peak_memory_mb",
            "peak memory of the build (warm)",
            "MB",
            vec![w as f64 / MB],
        ),
        (None, None) => not_selected("peak_memory_mb", "peak memory of the build", "MB", "build"),
    };
    figures.push(peak.detail("see note on the method"));

    judge(&mut figures);
    let load_end = load();
    notes.push(format!(
        "load average at start {load_start}, at end {load_end} (other work on this machine competes for its CPUs)"
    ));
    let bench = Bench {
        date,
        machine: machine(load_start, load_end),
        accel,
        versions: versions(opts),
        parts: opts.parts.clone(),
        figures,
        notes,
    };
    builder::fsutil::write_atomic(&cx.dir.join("bench.json"), bench.json().as_bytes())?;
    builder::fsutil::write_atomic(
        &cx.dir.join("table.md"),
        markdown(&bench.figures).as_bytes(),
    )?;
    Ok(bench)
}

fn not_selected(id: &'static str, name: &str, unit: &'static str, part: &str) -> Figure {
    Figure::not_measured(
        id,
        name,
        unit,
        &format!("part `{part}` not selected (--only)"),
    )
}

/// The build's own step timings (its last `build-image: step seconds:` line).
fn steps(t: &Timed) -> String {
    match t.last_line("build-image: step seconds: ") {
        Some(s) => format!("steps (s): {s}"),
        None => "no step timings in the output".into(),
    }
}

/// The floor: a local repository of the locked host closure and a bare
/// mmdebstrap of the spec's host packages from it — the builder's own
/// functions, without our hooks. Returns seconds and a detail line.
fn floor(cx: &Ctx<'_>) -> Result<(f64, String)> {
    let spec = cx.opts.project.read_spec()?;
    let lock = cx.opts.project.require_lock()?;
    let dir = cx.dir.join("floor");
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    eprintln!(
        "bench: floor: local repository + mmdebstrap of {} host packages",
        spec.packages.host.len()
    );
    let started = Instant::now();
    let suite = &spec.debian.suites[0];
    let repo = LocalRepo::create(&dir.join("repo"), &cx.opts.store, &lock, "host", suite)?;
    let repo_secs = started.elapsed().as_secs_f64();
    bootstrap::run(
        &Bootstrap {
            suite,
            include: &spec.packages.host,
            customize: Vec::new(),
            epoch: spec.image.source_date_epoch,
            source: repo.source_line(),
            label: "floor",
        },
        &dir.join("floor.tar"),
    )?;
    let secs = started.elapsed().as_secs_f64();
    let size = fs::metadata(dir.join("floor.tar"))
        .map(|m| m.len())
        .unwrap_or(0);
    fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    Ok((
        secs,
        format!(
            "local repository {repo_secs:.1} s + mmdebstrap {:.1} s ({} packages, {:.0} MB tarball)",
            secs - repo_secs,
            lock.closure("host").count(),
            size as f64 / MB
        ),
    ))
}

/// The one edit of the warm rebuild; the file is restored when this is
/// dropped (also on an error), and a copy kept under `target/bench` lets the
/// next bench restore it after a kill.
struct Restore {
    path: PathBuf,
    copy: PathBuf,
    original: Vec<u8>,
}

impl Restore {
    fn edit(opts: &Options, dir: &Path, n: usize) -> Result<Restore> {
        let path = opts.root.join(WARM_FILE);
        let original = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let text = String::from_utf8_lossy(&original);
        if !text.contains(WARM_MARKER) {
            bail!(
                "{WARM_FILE} no longer contains {WARM_MARKER:?}: point bench's WARM_FILE/WARM_MARKER \
                 (xtask/bench/src/parts.rs) at a comment of a rendered unit"
            );
        }
        let copy = dir.join("warm-file.orig");
        fs::write(&copy, &original).with_context(|| format!("writing {}", copy.display()))?;
        let edited = text.replacen(WARM_MARKER, &format!("{WARM_MARKER} (bench edit {n})"), 1);
        fs::write(&path, edited).with_context(|| format!("writing {}", path.display()))?;
        Ok(Restore {
            path,
            copy,
            original,
        })
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        match fs::write(&self.path, &self.original) {
            Ok(()) => {
                let _ = fs::remove_file(&self.copy);
            }
            Err(e) => eprintln!(
                "bench: RESTORE FAILED: {} could not be written back ({e}); its original is in {}",
                self.path.display(),
                self.copy.display()
            ),
        }
    }
}

/// Puts back the warm rebuild's file if an earlier bench was killed mid-edit.
fn restore_interrupted(opts: &Options, dir: &Path) -> Result<()> {
    let copy = dir.join("warm-file.orig");
    if copy.is_file() {
        let path = opts.root.join(WARM_FILE);
        fs::copy(&copy, &path)
            .with_context(|| format!("restoring {} from {}", path.display(), copy.display()))?;
        fs::remove_file(&copy).with_context(|| format!("removing {}", copy.display()))?;
        eprintln!("bench: restored {WARM_FILE} left edited by an interrupted bench");
    }
    Ok(())
}

const SIZE_FIGURES: [(&str, &str); 7] = [
    ("image_raw_apparent_mb", "image: raw, apparent"),
    ("image_raw_allocated_mb", "image: raw, allocated"),
    ("image_zstd_mb", "image: zstd -3"),
    (
        "contrib_base_mb",
        "contributor: base system (rootfs tarball)",
    ),
    (
        "contrib_sandbox_mb",
        "contributor: sandbox image (Docker's store)",
    ),
    (
        "contrib_node_modules_mb",
        "contributor: OpenClaw node_modules",
    ),
    ("contrib_node_mb", "contributor: Node runtime"),
];

/// Sizes of the image in `out` and of the stage outputs that go into it.
fn sizes(cx: &Ctx<'_>) -> Result<Vec<Figure>> {
    use std::os::unix::fs::MetadataExt;
    let name = cx.image_name()?;
    let raw = cx.out.join(format!("{name}.raw"));
    let meta = fs::metadata(&raw).with_context(|| format!("reading {}", raw.display()))?;
    let zst = cx.dir.join(format!("{name}.raw.zst"));
    let started = Instant::now();
    duct::cmd!("zstd", "-q", "-f", "-T0", "-3", &raw, "-o", &zst)
        .run()
        .context("compressing the image with zstd (is `zstd` installed? `cargo xtask doctor`)")?;
    let zst_secs = started.elapsed().as_secs_f64();
    let zst_bytes = fs::metadata(&zst).map(|m| m.len()).unwrap_or(0);
    fs::remove_file(&zst).with_context(|| format!("removing {}", zst.display()))?;

    let manifest = cx.out.join(format!("{name}.manifest.json"));
    let text =
        fs::read_to_string(&manifest).with_context(|| format!("reading {}", manifest.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", manifest.display()))?;
    let key = |stage: &str| -> Result<String> {
        v["stages"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == stage))
            .and_then(|s| s["key"].as_str())
            .map(str::to_string)
            .with_context(|| format!("{} names no `{stage}` stage", manifest.display()))
    };
    let base = cx.stages.join(format!("base-{}.tar", key("base")?));
    let sandbox = cx
        .stages
        .join(format!("sandbox-store-{}.tar", key("sandbox-store")?));
    let app = cx.stages.join(format!("app-{}", key("app")?));
    let mb = |b: u64| b as f64 / MB;
    let file_mb = |p: &Path| -> Result<f64> {
        Ok(mb(fs::metadata(p)
            .with_context(|| format!("reading {}", p.display()))?
            .len()))
    };
    Ok(vec![
        Figure::measured(
            SIZE_FIGURES[0].0,
            SIZE_FIGURES[0].1,
            "MB",
            vec![mb(meta.len())],
        ),
        Figure::measured(
            SIZE_FIGURES[1].0,
            SIZE_FIGURES[1].1,
            "MB",
            vec![mb(meta.blocks() * 512)],
        )
        .detail("blocks the sparse file occupies on the host"),
        Figure::measured(
            SIZE_FIGURES[2].0,
            SIZE_FIGURES[2].1,
            "MB",
            vec![mb(zst_bytes)],
        )
        .goal(Goal::AtMost { limit: 900.0 })
        .detail(format!(
            "zstd -3 -T0 (the level of build-image --compress), {zst_secs:.0} s"
        )),
        Figure::measured(
            SIZE_FIGURES[3].0,
            SIZE_FIGURES[3].1,
            "MB",
            vec![file_mb(&base)?],
        ),
        Figure::measured(
            SIZE_FIGURES[4].0,
            SIZE_FIGURES[4].1,
            "MB",
            vec![file_mb(&sandbox)?],
        )
        .detail("Docker's overlay2 image store under /var/lib/docker (tarball)"),
        Figure::measured(
            SIZE_FIGURES[5].0,
            SIZE_FIGURES[5].1,
            "MB",
            vec![mb(tree_bytes(&app.join("opt/openclaw/node_modules"))?)],
        )
        .detail("sum of file sizes"),
        Figure::measured(
            SIZE_FIGURES[6].0,
            SIZE_FIGURES[6].1,
            "MB",
            vec![mb(tree_bytes(&app.join("opt/node"))?)],
        )
        .detail("sum of file sizes"),
    ])
}

/// Sum of the sizes of the regular files below `dir`.
fn tree_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for e in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e.with_context(|| format!("reading {}", dir.display()))?;
        let t = e
            .file_type()
            .with_context(|| format!("reading {}", e.path().display()))?;
        if t.is_dir() {
            total += tree_bytes(&e.path())?;
        } else if t.is_file() {
            total += e
                .metadata()
                .with_context(|| format!("reading {}", e.path().display()))?
                .len();
        }
    }
    Ok(total)
}

/// `cargo xtask vm-test --firmware <fw>` on the bench's image: total wall
/// time and the time to the first check.
fn vm_test(cx: &mut Ctx<'_>, fw: &str, wanted: bool, kvm: bool) -> Result<Vec<Figure>> {
    let boot_id = if fw == "bios" {
        "vm_test_bios_boot_s"
    } else {
        "vm_test_uefi_boot_s"
    };
    let total_id = if fw == "bios" {
        "vm_test_bios_total_s"
    } else {
        "vm_test_uefi_total_s"
    };
    let boot_name = format!("vm-test {fw}: boot to first check");
    let total_name = format!("vm-test {fw}: total");
    let goal = Goal::AtMost { limit: 150.0 };
    if !wanted {
        let why = format!("part `vm-test` not selected (--only); {TCG_NOTE}");
        return Ok(vec![
            Figure::not_measured(boot_id, &boot_name, "s", &why).goal(goal),
            Figure::not_measured(total_id, &total_name, "s", &why).goal(goal),
        ]);
    }
    cx.prime()?;
    let name = cx.image_name()?;
    let image = cx.out.join(format!("{name}.raw"));
    let argv = cx.xtask(
        "vm-test",
        &[
            "--image".into(),
            image.into(),
            "--firmware".into(),
            fw.into(),
            "--no-doctor".into(),
        ],
    );
    let t = measure::run(
        &cx.opts.cargo,
        &argv,
        &cx.opts.root,
        &format!("vm-test {fw}"),
        &cx.log,
    )?;
    let outcome = t
        .lines
        .iter()
        .rev()
        .find(|(_, l)| l.contains(" passed, ") && l.contains(" failed, "))
        .map(|(_, l)| l.trim().to_string())
        .unwrap_or_else(|| format!("no summary line ({})", t.status));
    let mut boot = match first_check_second(&t.lines, fw) {
        Some(s) => Figure::measured(boot_id, &boot_name, "s", vec![s]),
        None => Figure::not_measured(
            boot_id,
            &boot_name,
            "s",
            "no check started (see target/bench/bench.log)",
        ),
    }
    .goal(goal);
    let mut total = Figure::measured(total_id, &total_name, "s", vec![t.seconds])
        .goal(goal)
        .detail(format!(
            "{outcome}; {}",
            if t.success { "exit 0" } else { "exit non-zero" }
        ));
    if !kvm {
        for f in [&mut boot, &mut total] {
            if f.value.is_some() {
                f.status = Status::NotJudged("the goal is for KVM; this ran under TCG".into());
            }
        }
    }
    Ok(vec![boot, total])
}

/// The second at which vm-test started its first check for `fw`: its first
/// `vm-test [<fw>]: <ID> <title>` line (an ID like `NET-1`).
pub fn first_check_second(lines: &[(f64, String)], fw: &str) -> Option<f64> {
    let prefix = format!("vm-test [{fw}]: ");
    lines.iter().find_map(|(t, l)| {
        let rest = l.strip_prefix(&prefix)?;
        let id = rest.split_whitespace().next()?;
        let (area, num) = id.split_once('-')?;
        let is_id = !area.is_empty()
            && area.chars().all(|c| c.is_ascii_uppercase())
            && !num.is_empty()
            && num.chars().all(|c| c.is_ascii_digit());
        is_id.then_some(*t)
    })
}

fn first_line(program: &str, args: &[&str]) -> String {
    duct::cmd(program, args)
        .stderr_to_stdout()
        .unchecked()
        .read()
        .ok()
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| format!("{program}: not found"))
}

fn versions(opts: &Options) -> BTreeMap<String, String> {
    // Each program named at its call, where doctor's test of host programs sees it.
    let mut v: BTreeMap<String, String> = [
        ("rustc", first_line("rustc", &["--version"])),
        ("qemu", first_line("qemu-system-x86_64", &["--version"])),
        ("mmdebstrap", first_line("mmdebstrap", &["--version"])),
        ("zstd", first_line("zstd", &["--version"])),
    ]
    .into_iter()
    .map(|(k, line)| (k.to_string(), line))
    .collect();
    let lock_sha = fs::read(&opts.project.lock)
        .map(|b| hex::encode(Sha256::digest(&b)))
        .unwrap_or_else(|e| format!("unreadable: {e}"));
    v.insert("image.lock sha256".into(), lock_sha);
    if let Ok(lock) = opts.project.require_lock() {
        v.insert("openclaw".into(), lock.openclaw.version.clone());
        v.insert("node".into(), lock.node.version.clone());
    }
    v
}

fn machine(load_start: String, load_end: String) -> Machine {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown".into());
    let memory_bytes = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024);
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        memory_bytes,
        kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        load_start,
        load_end,
    }
}

fn load() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_check_is_the_first_id_line_of_that_firmware() {
        let lines: Vec<(f64, String)> = [
            (
                1.0,
                "vm-test [bios]: booting x.raw (secrets via a systemd credential)",
            ),
            (2.0, "vm-test [uefi]: NET-1 firewall active"),
            (90.5, "vm-test [bios]: NET-1 firewall active: deny incoming"),
            (99.0, "vm-test [bios]: NET-1 pass (8.2 s)"),
        ]
        .iter()
        .map(|(t, l)| (*t, l.to_string()))
        .collect();
        assert_eq!(first_check_second(&lines, "bios"), Some(90.5));
        assert_eq!(first_check_second(&lines, "uefi"), Some(2.0));
        assert_eq!(first_check_second(&lines[..1], "bios"), None);
    }

    #[test]
    fn warm_edit_is_restored_on_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let file = root.join(WARM_FILE);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        let original = format!("a\n{WARM_MARKER}\\n\\\nb\n");
        fs::write(&file, &original).unwrap();
        let opts = Options {
            root: root.clone(),
            cargo: "cargo".into(),
            project: builder::locking::Project::new(&root.join("image.toml")),
            store: builder::store::Store::open(&root.join("store")).unwrap(),
            source_args: Vec::new(),
            runs: 1,
            parts: Vec::new(),
            firmwares: Vec::new(),
        };
        {
            let _edit = Restore::edit(&opts, &root, 2).unwrap();
            let edited = fs::read_to_string(&file).unwrap();
            assert!(edited.contains("(bench edit 2)"), "{edited}");
            assert!(root.join("warm-file.orig").is_file());
        }
        assert_eq!(fs::read_to_string(&file).unwrap(), original);
        assert!(!root.join("warm-file.orig").exists());
        // A kill mid-edit: the copy restores it.
        let edit = Restore::edit(&opts, &root, 3).unwrap();
        std::mem::forget(edit);
        restore_interrupted(&opts, &root).unwrap();
        assert_eq!(fs::read_to_string(&file).unwrap(), original);
    }
}
