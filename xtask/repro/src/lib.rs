//! Proving and explaining reproducibility (`cargo xtask verify-repro`).
//!
//! What it owns: the verify-repro flow ([`verify()`]: the `build-image`
//! children, their environments, the comparison, the records), the one
//! runner of a child build whose lines are read as they come
//! ([`child::ChildRun`], also `bench`'s), and the forensics below. What it
//! must not do: build an image itself (the builds are `build-image`
//! children; it reads their stage directories and images; only the agent
//! is rebuilt here, through `builder::agent_binary`), touch the network, or
//! print the lines meant for people (they go to the caller's `say`;
//! progress goes to stderr).
//!
//! Two builds of the same lock must give the same raw image (BOOT-3). When
//! they do not, [`explain`] says where, from the outside in:
//!
//! 1. **Disk regions** ([`gpt`]): the byte ranges that differ ([`bytes`]),
//!    located in the protective MBR, the primary and backup GPT headers and
//!    entry arrays, or a partition.
//! 2. **Inside the filesystems**: for the ext4 root, the inodes, paths and
//!    `debugfs stat` fields that differ ([`ext4`]); for the vfat ESP, the
//!    boot sector / FATs / files and their listing and contents ([`vfat`]).
//! 3. **Stages** ([`stages`]): the first stage whose output differs between
//!    the two stage directories (tools tree, base rootfs, sandbox image,
//!    app tree, agent, inner manifest, root tarball), entry by entry
//!    ([`listing`]) — usually the most useful pointer.
//! 4. `diffoscope`, when installed, on the first differing tarball.
//!
//! [`Record`] is what a successful (or failed) check writes beside the
//! image as `<name>.repro.json`; vm-test's BOOT-3 reads it.

pub mod agent;
pub mod bytes;
pub mod child;
pub mod ext4;
pub mod gpt;
pub mod listing;
pub mod stages;
pub mod verify;
pub mod vfat;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Digest;

pub use agent::{AgentCheck, agent_check};
pub use stages::{BuildDir, StageResult, compare_stages, read_manifest, stage_keys};
pub use verify::{BuildSources, Mode, Outcome, VerifyOptions, verify};

use builder::fsutil::write_atomic;
use disk::tools::ToolsTree;

/// Byte ranges kept from the image comparison.
const MAX_RANGES: usize = 20_000;

/// A published image hash to check a rebuild against.
#[derive(Debug, Clone, PartialEq)]
pub enum Published {
    /// A bare sha256 (64 hex digits).
    Sha256(String),
    /// A manifest (`<name>.manifest.json`) or checksum file (`<name>.raw.sha256`).
    File {
        /// The file.
        path: PathBuf,
        /// The image sha256 it names.
        sha256: String,
        /// The manifest, when the file is one.
        manifest: Option<Value>,
        /// The sha256 of the file's own bytes (ties a record to the very
        /// manifest it rebuilt: vm-test's BOOT-3).
        file_sha256: String,
    },
}

impl Published {
    /// Parses `--against`: 64 hex digits, or a manifest JSON file with
    /// `image_sha256`, or a `sha256sum`-style file.
    pub fn parse(arg: &str) -> Result<Published> {
        if is_sha256(arg) {
            return Ok(Published::Sha256(arg.to_ascii_lowercase()));
        }
        let path = PathBuf::from(arg);
        let text = fs::read_to_string(&path).with_context(|| {
            format!("`{arg}` is neither a sha256 (64 hex digits) nor a readable manifest file")
        })?;
        let file_sha256 = hex::encode(sha2::Sha256::digest(text.as_bytes()));
        if let Ok(v) = serde_json::from_str::<Value>(&text) {
            let sha = v
                .get("image_sha256")
                .and_then(Value::as_str)
                .filter(|s| is_sha256(s))
                .with_context(|| format!("{} has no image_sha256", path.display()))?
                .to_ascii_lowercase();
            return Ok(Published::File {
                path,
                sha256: sha,
                manifest: Some(v),
                file_sha256,
            });
        }
        match text.split_whitespace().next() {
            Some(s) if is_sha256(s) => Ok(Published::File {
                path,
                sha256: s.to_ascii_lowercase(),
                manifest: None,
                file_sha256,
            }),
            _ => bail!(
                "{} is neither a manifest (JSON with image_sha256) nor a sha256 file",
                path.display()
            ),
        }
    }

    /// The expected image sha256.
    pub fn sha256(&self) -> &str {
        match self {
            Published::Sha256(s) | Published::File { sha256: s, .. } => s,
        }
    }

    /// The apt sources the published build wrote into its image (manifest
    /// `apt_sources`), when the manifest records them: (debian, security).
    pub fn apt_sources(&self) -> Option<(String, String)> {
        let Published::File {
            manifest: Some(m), ..
        } = self
        else {
            return None;
        };
        let src = m.get("apt_sources")?;
        let get = |k: &str| src.get(k).and_then(Value::as_str).map(str::to_string);
        Some((get("debian")?, get("security")?))
    }

    /// The sha256 of the file's bytes (`None` for a bare sha256).
    pub fn file_sha256(&self) -> Option<String> {
        match self {
            Published::Sha256(_) => None,
            Published::File { file_sha256, .. } => Some(file_sha256.clone()),
        }
    }

    /// Where the hash came from, for messages.
    pub fn source(&self) -> String {
        match self {
            Published::Sha256(_) => "the command line".into(),
            Published::File { path, .. } => path.display().to_string(),
        }
    }
}

/// Whether `s` is 64 hex digits.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// One build of a check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildRecord {
    /// The build directory (stage cache and output below it).
    pub dir: String,
    /// The image sha256 it produced.
    pub sha256: String,
    /// Start, UTC (RFC 3339).
    pub started: String,
    /// Duration in seconds.
    pub seconds: u64,
    /// `TZ` of the build process.
    pub tz: String,
    /// `LC_ALL` of the build process.
    pub lc_all: String,
    /// umask of the build process (octal).
    pub umask: String,
}

/// The published hash a rebuild was compared with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Against {
    /// The published image sha256.
    pub sha256: String,
    /// Where it came from.
    pub source: String,
    /// The sha256 of that file's bytes, when it came from a file (the
    /// manifest rebuilt against).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_sha256: Option<String>,
}

/// `<name>.repro.json`: the result of `verify-repro`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The image name.
    pub name: String,
    /// The sha256 of the first build's image (the one this record describes).
    pub sha256: String,
    /// Whether every build (and the published hash, if any) agreed.
    pub identical: bool,
    /// The builds compared.
    pub builds: Vec<BuildRecord>,
    /// The published hash checked against, and where it came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub against: Option<Against>,
    /// The first-boot agent rebuilt from a copy of the sources elsewhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_check: Option<AgentCheck>,
    /// When the check finished, UTC (RFC 3339).
    pub date: String,
    /// The lock's `SOURCE_DATE_EPOCH`.
    pub source_date_epoch: u64,
    /// The `cargo xtask ci` run that made this record (its
    /// `OPENCLAW_CI_RUN`), so that vm-test's BOOT-3 trusts only a rebuild
    /// of its own run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_run: Option<String>,
    /// The fake Hetzner token (`HCLOUD_TOKEN`, a CI canary) the rebuild ran
    /// with, for vm-test's INF-1 to search the image for. Only a value
    /// with the canary prefix is ever recorded, never a real token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hcloud_canary: Option<String>,
}

impl Record {
    /// Writes the record as `<image without .raw>.repro.json` beside `image`
    /// (the path vm-test's BOOT-3 reads); returns that path.
    pub fn write_beside(&self, image: &Path) -> Result<PathBuf> {
        let path = record_path(image);
        let mut text = serde_json::to_string_pretty(self).context("serialising the record")?;
        text.push('\n');
        write_atomic(&path, text.as_bytes())?;
        Ok(path)
    }
}

/// The key of stage `name` in the manifest file `path` (for `agent`: the
/// binary's sha256).
pub fn stage_key(path: &Path, name: &str) -> Result<Option<String>> {
    Ok(stage_keys(&read_manifest(path)?)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, k)| k))
}

/// Where the record of `image` lives (`x.raw` → `x.repro.json`).
pub fn record_path(image: &Path) -> PathBuf {
    image.with_extension("repro.json")
}

/// `t` as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    image_spec::time::rfc3339(i64::try_from(secs).unwrap_or(i64::MAX))
}

/// `verify-repro --json`: the verdict, the record written and, on a
/// mismatch, where the builds differ (docs/cli.md).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReproReport {
    /// Whether the builds (and the published hash, if any) agree.
    pub identical: bool,
    /// The record written beside the image (`None` for `--compare-only`).
    pub record: Option<Record>,
    /// Where the record was written.
    pub written: Vec<PathBuf>,
    /// What differs between the published and the rebuilt manifest
    /// (`--against` a manifest, on a mismatch).
    pub manifest_differences: Vec<String>,
    /// The explanation of a mismatch, line by line ([`explain`]).
    pub explanation: Vec<String>,
    /// The first stage going into the image whose outputs differ.
    pub first_diverged: Option<String>,
}

impl ReproReport {
    /// Adds what [`explain`] found.
    pub fn explained(&mut self, ex: &Explanation) {
        self.explanation.extend(ex.lines.iter().cloned());
        self.first_diverged = ex.first_diverged.clone();
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        // Strings, numbers and paths: serializing cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// What [`explain`] found.
#[derive(Debug, Clone, Default)]
pub struct Explanation {
    /// The report, line by line.
    pub lines: Vec<String>,
    /// The first stage (going into the image) whose outputs differ.
    pub first_diverged: Option<String>,
}

/// Says where and why the images of builds `a` and `b` differ. `scratch`
/// is a directory for temporary files; `limit` caps each list.
pub fn explain(a: &BuildDir, b: &BuildDir, scratch: &Path, limit: usize) -> Result<Explanation> {
    let mut ex = Explanation::default();
    let lines = &mut ex.lines;

    // 1. Stages: the most useful pointer comes first.
    lines.push("== stages (first divergence is the likely cause) ==".into());
    let mut first_tar: Option<(PathBuf, PathBuf)> = None;
    match compare_stages(a, b, scratch, limit) {
        Ok(results) => {
            for r in &results {
                let tag = if r.same { "same" } else { "DIFFERS" };
                let note = if r.in_image {
                    ""
                } else {
                    " (not in the image)"
                };
                lines.push(format!("{}: {tag}{note}", r.name));
                lines.extend(r.details.iter().map(|d| format!("    {d}")));
                if !r.same && r.in_image && ex.first_diverged.is_none() {
                    ex.first_diverged = Some(r.name.clone());
                }
            }
            if let Some(r) = results.iter().find(|r| !r.same && r.in_image) {
                first_tar = stage_tarballs(a, b, &r.name);
            }
        }
        Err(e) => lines.push(format!("cannot compare the stages: {e:#}")),
    }

    // Known causes, recognised in what differs.
    for hint in hints(a, b, lines) {
        lines.push(format!("hint: {hint}"));
    }

    // 2. Disk regions.
    lines.push("== disk ==".into());
    let diff = bytes::diff_files(&a.image, &b.image, MAX_RANGES)?;
    lines.push(format!(
        "{} byte(s) differ in {}{} range(s); sizes {} / {}",
        diff.differing_bytes,
        diff.ranges.len(),
        if diff.truncated { "+" } else { "" },
        diff.len_a,
        diff.len_b
    ));
    let table = match gpt::read_gpt(&a.image) {
        Ok(t) => t,
        Err(e) => {
            lines.push(format!("cannot read image A's partition table: {e:#}"));
            let first: Vec<String> = diff
                .ranges
                .iter()
                .take(8)
                .map(|r| format!("{}..{}", r.start, r.end))
                .collect();
            lines.push(format!("first differing byte ranges: {}", first.join(" ")));
            return Ok(ex);
        }
    };
    let located = gpt::locate(&diff.ranges, &table.regions(diff.len_a));
    let tools = tools_tree(a);
    for (region, ranges) in &located {
        let shown: Vec<String> = ranges
            .iter()
            .take(8)
            .map(|r| format!("+{}..+{}", r.start - region.start, r.end - region.start))
            .collect();
        lines.push(format!(
            "{}: {} range(s), {} byte(s): {}{}",
            region.name,
            ranges.len(),
            ranges.iter().map(bytes::ByteRange::len).sum::<u64>(),
            shown.join(" "),
            if ranges.len() > 8 { " …" } else { "" }
        ));
        let Some(num) = region.partition else {
            continue;
        };
        let Some(p) = table.partitions.iter().find(|p| p.number == num) else {
            continue;
        };
        let rel: Vec<bytes::ByteRange> = ranges
            .iter()
            .map(|r| bytes::ByteRange {
                start: r.start - region.start,
                end: r.end - region.start,
            })
            .collect();
        let Some(tools) = &tools else {
            lines.push(
                "    (no tools tree in build A's stage directory: filesystem details skipped)"
                    .into(),
            );
            continue;
        };
        let detail = match p.type_guid.as_str() {
            t if t == disk::ROOT_X86_64_TYPE => {
                ext4::explain(tools, &a.image, &b.image, p.offset(), &rel, limit)
            }
            t if t == disk::ESP_TYPE => read_at(&a.image, p.offset(), 512)
                .and_then(|boot| vfat::explain(tools, &a.image, &b.image, p.offset(), &boot, &rel)),
            _ => Ok(vec![
                "GRUB's core.img (made by grub-mkimage from the tools tree, patched with the BIOS boot partition's LBA)".into(),
            ]),
        };
        match detail {
            Ok(d) => lines.extend(d.into_iter().map(|l| format!("    {l}"))),
            Err(e) => lines.push(format!("    could not look inside: {e:#}")),
        }
    }

    // 3. diffoscope, when installed.
    if let Some(diffoscope) = hostutil::which("diffoscope", &[]) {
        let (x, y) = first_tar.unwrap_or_else(|| (a.image.clone(), b.image.clone()));
        let report = scratch.join("diffoscope.txt");
        fs::create_dir_all(scratch).with_context(|| format!("creating {}", scratch.display()))?;
        let run = duct::cmd!(
            diffoscope,
            "--text",
            &report,
            "--max-report-size",
            "20000000",
            &x,
            &y
        )
        .stdout_null()
        .stderr_null()
        .unchecked()
        .run();
        match run {
            Ok(_) => lines.push(format!(
                "diffoscope {} {}: report in {}",
                x.display(),
                y.display(),
                report.display()
            )),
            Err(e) => lines.push(format!("diffoscope could not run: {e}")),
        }
    } else {
        lines.push(
            "(diffoscope not installed: the file-level diff above is this tool's own)".into(),
        );
    }
    Ok(ex)
}

/// Known causes recognised in report `lines` about builds `a` and `b`.
pub fn hints(a: &BuildDir, b: &BuildDir, lines: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let leaks = |d: &BuildDir| {
        let plain = d.stage_dir.display().to_string();
        let mangled = plain.trim_start_matches('/').replace('/', "_");
        lines
            .iter()
            .any(|l| l.contains(&plain) || (!mangled.is_empty() && l.contains(&mangled)))
    };
    if leaks(a) || leaks(b) {
        out.push(
            "a build directory's path is in a file name or content (apt keeps the local \
             repository's lists, named after its file:// path, in var/lib/apt/lists and \
             var/cache/apt/*.bin): the image depends on where it is built"
                .into(),
        );
    }
    if lines.iter().any(|l| l.contains("etc/gitconfig")) {
        out.push(
            "etc/gitconfig: `git lfs install --system` (git-lfs postinst) writes the \
             [filter \"lfs\"] keys in random (Go map) order"
                .into(),
        );
    }
    if lines
        .iter()
        .any(|l| l.contains("etc/apt/sources.list.d/debian.sources"))
    {
        out.push(
            "the image's apt sources differ: without debian.mirror in image.toml they come \
             from the host's apt configuration or --mirror"
                .into(),
        );
    }
    out
}

/// The two builds' output tarballs of stage `name`, if it has one.
fn stage_tarballs(a: &BuildDir, b: &BuildDir, name: &str) -> Option<(PathBuf, PathBuf)> {
    let key = |d: &BuildDir, stage: &str| {
        read_manifest(&d.manifest)
            .ok()
            .and_then(|m| stage_keys(&m).into_iter().find(|(n, _)| n == stage))
            .map(|(_, k)| k)
    };
    let file = |d: &BuildDir| -> Option<PathBuf> {
        match name {
            "base" => Some(d.stage_dir.join(format!("base-{}.tar", key(d, "base")?))),
            "sandbox" => Some(
                d.stage_dir
                    .join(format!("sandbox-{}.image.tar", key(d, "sandbox")?)),
            ),
            "sandbox-store" => Some(
                d.stage_dir
                    .join(format!("sandbox-store-{}.tar", key(d, "sandbox-store")?)),
            ),
            n if n.starts_with("root") => Some(d.stage_dir.join("root.tar")),
            _ => None,
        }
    };
    Some((file(a)?, file(b)?))
}

/// Build A's tools tree (the one that made its disk), if it is there.
fn tools_tree(a: &BuildDir) -> Option<ToolsTree> {
    let m = read_manifest(&a.manifest).ok()?;
    let key = stage_keys(&m).into_iter().find(|(n, _)| n == "tools")?.1;
    ToolsTree::open(&a.stage_dir.join(format!("tools-{key}"))).ok()
}

fn read_at(path: &Path, offset: u64, len: usize) -> Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buf = vec![0u8; len];
    f.seek(SeekFrom::Start(offset))
        .and_then(|_| f.read_exact(&mut buf))
        .with_context(|| format!("reading {len} bytes at {offset} of {}", path.display()))?;
    Ok(buf)
}

/// For `--against MANIFEST`: what differs between the published manifest
/// and the rebuilt one (inputs, stage keys, the agent), line by line.
pub fn compare_manifests(published: &Value, rebuilt: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for field in [
        "name",
        "source_date_epoch",
        "openclaw",
        "node",
        "tailscale",
        "go_modules",
        "sandbox_image",
    ] {
        let (x, y) = (published.get(field), rebuilt.get(field));
        if x != y {
            out.push(format!(
                "{field}: published {} / rebuilt {}",
                x.map(Value::to_string).unwrap_or_else(|| "absent".into()),
                y.map(Value::to_string).unwrap_or_else(|| "absent".into())
            ));
        }
    }
    let (ka, kb) = (stage_keys(published), stage_keys(rebuilt));
    for (name, key) in &ka {
        match kb.iter().find(|(n, _)| n == name) {
            Some((_, k)) if k == key => {}
            Some((_, k)) => out.push(format!("stage {name}: key {key} → {k}")),
            None => out.push(format!("stage {name}: not in the rebuilt manifest")),
        }
    }
    let debs = |m: &Value| m.get("debian_packages").cloned().unwrap_or(Value::Null);
    if debs(published) != debs(rebuilt) {
        out.push("debian_packages differ: the lock is not the same".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tools tree named by `REPRO_TEST_TOOLS`, for `test`'s end-to-end
    /// run (ignored by default); panics, saying what to set, without it.
    pub(super) fn test_tools(test: &str) -> PathBuf {
        std::env::var_os("REPRO_TEST_TOOLS")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                panic!(
                    "REPRO_TEST_TOOLS is not set: set REPRO_TEST_TOOLS=target/build/stages/tools-<key> \
                     (a tools tree that `cargo xtask build-image` made) to run {test}"
                )
            })
    }

    #[test]
    fn report_json_shape() {
        let build = |dir: &str, tz: &str| BuildRecord {
            dir: dir.into(),
            sha256: "ab".repeat(32),
            started: "2026-12-06T20:00:00Z".into(),
            seconds: 640,
            tz: tz.into(),
            lc_all: "C.UTF-8".into(),
            umask: "022".into(),
        };
        let record = Record {
            name: "openclaw-appliance".into(),
            sha256: "ab".repeat(32),
            identical: false,
            builds: vec![build("/src/target/repro/check", "<+1245>-12:45")],
            against: Some(Against {
                sha256: "cd".repeat(32),
                source: "target/image/openclaw-appliance.manifest.json".into(),
                file_sha256: Some("ef".repeat(32)),
            }),
            agent_check: None,
            date: "2026-12-06T20:11:00Z".into(),
            source_date_epoch: 1_764_000_000,
            ci_run: None,
            hcloud_canary: None,
        };
        let mut report = ReproReport {
            identical: false,
            record: Some(record),
            written: vec!["/src/target/repro/check/image/openclaw-appliance.repro.json".into()],
            manifest_differences: vec!["stage root: a1… vs b2…".into()],
            ..ReproReport::default()
        };
        report.explained(&Explanation {
            lines: vec!["partition 2 (root): 3 files differ".into()],
            first_diverged: Some("root".into()),
        });
        insta::assert_snapshot!(report.to_json());
    }

    #[test]
    fn published_hashes() {
        let h = "AB".repeat(32);
        assert_eq!(
            Published::parse(&h).unwrap(),
            Published::Sha256("ab".repeat(32))
        );
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("x.manifest.json");
        fs::write(&m, format!("{{\"image_sha256\": \"{}\"}}", "cd".repeat(32))).unwrap();
        assert_eq!(
            Published::parse(m.to_str().unwrap()).unwrap().sha256(),
            "cd".repeat(32)
        );
        let s = dir.path().join("x.raw.sha256");
        fs::write(&s, format!("{}  x.raw\n", "ef".repeat(32))).unwrap();
        assert_eq!(
            Published::parse(s.to_str().unwrap()).unwrap().sha256(),
            "ef".repeat(32)
        );
        let bad = dir.path().join("bad.json");
        fs::write(&bad, "{\"image_sha256\": null}").unwrap();
        assert!(Published::parse(bad.to_str().unwrap()).is_err());
        assert!(Published::parse("deadbeef").is_err());
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_763_942_400 + 3661);
        assert_eq!(rfc3339(t), "2025-11-24T01:01:01Z");
        let leap = UNIX_EPOCH + std::time::Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn record_lives_beside_the_image() {
        assert_eq!(
            record_path(Path::new("target/image/openclaw-appliance.raw")),
            Path::new("target/image/openclaw-appliance.repro.json")
        );
    }

    #[test]
    fn known_causes_are_hinted() {
        let dir = |d: &str| BuildDir {
            label: d.into(),
            stage_dir: PathBuf::from(format!("/w/target/repro/{d}/stages")),
            image: PathBuf::new(),
            manifest: PathBuf::new(),
        };
        let lines = [
            "var/lib/apt/lists/_w_target_repro_a_stages_repo-host_dists_trixie_Release: only in A"
                .to_string(),
            "etc/apt/sources.list.d/debian.sources: content sha256 1 → 2".to_string(),
        ];
        let h = hints(&dir("a"), &dir("b"), &lines);
        assert_eq!(h.len(), 2, "{h:?}");
        assert!(h[0].contains("build directory"));
        assert!(h[1].contains("apt sources"));
        assert!(hints(&dir("a"), &dir("b"), &["x: mtime 1 → 2".to_string()]).is_empty());
    }

    #[test]
    fn manifests_compared() {
        let a = serde_json::json!({"name": "x", "node": {"version": "24"}, "stages": [{"name": "base", "key": "k1"}]});
        let b = serde_json::json!({"name": "x", "node": {"version": "25"}, "stages": [{"name": "base", "key": "k2"}]});
        assert_eq!(
            compare_manifests(&a, &b),
            [
                "node: published {\"version\":\"24\"} / rebuilt {\"version\":\"25\"}",
                "stage base: key k1 → k2"
            ]
        );
        assert!(compare_manifests(&a, &a).is_empty());
    }
}
