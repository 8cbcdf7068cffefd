//! Every flag of every task, in one place; their doc comments are the help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Build, test and publish the reproducible OpenClaw appliance image.
#[derive(Parser, Debug)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    version,
    about = "Build, test and publish the reproducible OpenClaw appliance image."
)]
pub struct Cli {
    /// The task to run.
    #[command(subcommand)]
    pub task: Task,
}

/// The tasks.
#[derive(Subcommand, Debug)]
pub enum Task {
    /// Resolve every input of image.toml to exact versions and hashes (image.lock).
    Lock(LockArgs),
    /// Download every locked input into the content-addressed store, verified.
    Fetch(FetchArgs),
    /// Build the disk image target/image/<name>.raw (+ .sha256, manifest) from the lock.
    BuildImage(BuildImageArgs),
    /// Boot the image in QEMU (BIOS and UEFI) and prove every invariant of invariants.md.
    VmTest(VmTestArgs),
    /// Build the image twice (other directory, time, TZ, locale, umask) and compare; on a mismatch say where.
    VerifyRepro(VerifyReproArgs),
    /// Publish the image as a Hetzner Cloud snapshot (HCLOUD_TOKEN; `upload cleanup` removes leftovers).
    ///
    /// The server type, location, architecture and disk size are checked
    /// first. A temporary SSH key and server (labelled openclaw-image/temporary)
    /// are created, the server boots the rescue system (checked: host name
    /// `rescue`, root not on a disk, the disk not mounted), the image is streamed
    /// zstd-compressed over SSH onto its disk, read back from the device and
    /// checked by sha256 on the server (written again once on a mismatch), the
    /// disk is snapshotted, and the server and key are deleted again, also on
    /// errors and Ctrl-C. The token comes from HCLOUD_TOKEN, the
    /// API endpoint from HCLOUD_ENDPOINT (default: https://api.hetzner.cloud/v1).
    /// When a snapshot labelled with the image's sha256 exists, nothing is
    /// uploaded. The snapshot id is printed on stdout (`--json` or `-o json`: a report, docs/cli.md).
    /// Exit codes: 0 uploaded or already there, 1 failure (for `cleanup`: any
    /// resource it could not delete). See docs/hetzner.md.
    Upload(UploadArgs),
    /// Check host prerequisites; on Debian as root, install what is missing.
    Doctor(DoctorArgs),
    /// Run exactly what CI runs: fmt, clippy, tests (Rust, and the test tailnet's Go), lock check, doctor, build-image, verify-repro, vm-test.
    Ci(CiArgs),
    /// Time the cold, warm and no-op builds, vm-test and the image sizes against their goals (target/bench/bench.json).
    Bench(BenchArgs),
}

/// Where inputs come from: the spec, mirrors, registries, the store.
#[derive(Args, Debug, Clone)]
pub struct Sources {
    /// The spec file.
    #[arg(long, default_value = "image.toml", value_name = "FILE")]
    pub spec: PathBuf,
    /// Debian archive root URL (default: image.toml's debian.mirror, else the host's apt sources).
    #[arg(long, value_name = "URL")]
    pub mirror: Option<String>,
    /// Debian security archive root URL (default: image.toml, else the host's apt sources).
    #[arg(long, value_name = "URL")]
    pub security_mirror: Option<String>,
    /// npm registry URL (default: $npm_config_registry, else `npm config get registry`).
    #[arg(long, value_name = "URL")]
    pub npm_registry: Option<String>,
    /// The content-addressed store (default: ~/.cache/openclaw-image/store).
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
}

/// `cargo xtask lock`
#[derive(Args, Debug)]
pub struct LockArgs {
    #[command(flatten)]
    pub sources: Sources,
    /// Only check that image.lock matches image.toml; exit 1 naming what differs.
    #[arg(long, conflicts_with = "update")]
    pub check: bool,
    /// Re-resolve everything against the mirror and registry now, moving pins.
    #[arg(long)]
    pub update: bool,
    /// Print a JSON report on stdout (its shape and the exit codes: docs/cli.md); the human lines go to stderr.
    #[arg(long)]
    pub json: bool,
}

/// `cargo xtask fetch`
#[derive(Args, Debug)]
pub struct FetchArgs {
    #[command(flatten)]
    pub sources: Sources,
    /// A directory of inputs that cannot be downloaded here (e.g. tailscale_1.102.4_amd64.tgz).
    #[arg(long, value_name = "DIR")]
    pub input_dir: Option<PathBuf>,
    /// Print a JSON report on stdout (its shape and the exit codes: docs/cli.md); the human lines go to stderr.
    #[arg(long)]
    pub json: bool,
}

/// `cargo xtask build-image`
#[derive(Args, Debug)]
pub struct BuildImageArgs {
    #[command(flatten)]
    pub fetch: FetchArgs,
    /// Never download: build only from what the store already holds.
    #[arg(long)]
    pub offline: bool,
    /// Also write <name>.raw.zst (zstd -3).
    #[arg(long)]
    pub compress: bool,
    /// Output directory (default: target/image).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Stage cache directory (default: target/build/stages).
    #[arg(long, value_name = "DIR")]
    pub stage_dir: Option<PathBuf>,
    /// Skip the host prerequisite check.
    #[arg(long)]
    pub no_doctor: bool,
    /// Build from a copy of the spec (written to <out>/spec/) whose
    /// image.hostname is NAME, with the same lock: the image B that
    /// `vm-test --image-b` rebuilds onto (UPD-2). Use with --out.
    #[arg(long, value_name = "NAME", requires = "out")]
    pub variant_hostname: Option<String>,
    /// Also keep the merged root tarball as <stage-dir>/root.tar (verify-repro compares it).
    #[arg(long, hide = true)]
    pub keep_root_tar: bool,
}

/// `cargo xtask vm-test`
#[derive(Args, Debug)]
pub struct VmTestArgs {
    /// The raw image to test (default: target/image/openclaw-appliance.raw); never modified.
    #[arg(long, value_name = "PATH")]
    pub image: Option<PathBuf>,
    /// UPD-2's rebuild target: a second image from the same lock with one
    /// visible change (`build-image --variant-hostname NAME --out DIR`);
    /// the state volume of an image-A machine is attached to a fresh
    /// machine of this image. Without it UPD-2 is reported as not run
    /// (`cargo xtask ci` passes none).
    #[arg(long, value_name = "PATH")]
    pub image_b: Option<PathBuf>,
    /// Firmware to boot under.
    #[arg(long, value_enum, default_value = "both")]
    pub firmware: FirmwareChoice,
    /// Only these invariant IDs, comma-separated (e.g. NET-3,SRV-1).
    #[arg(long, value_delimiter = ',', value_name = "ID,ID…")]
    pub only: Vec<String>,
    /// Under TCG, run these passes' main machine on an instruction-counting
    /// clock (QEMU `-icount shift=0`; tune with VMTEST_ICOUNT=N[,sleep=off]):
    /// OpenClaw's startup deadlines then measure work, not emulation speed,
    /// so the gateway can start and its cases run. About doubles the pass's
    /// time. No effect under KVM.
    #[arg(long, value_enum, value_name = "FIRMWARE")]
    pub icount: Option<FirmwareChoice>,
    /// CI's split: the first firmware pass runs every ID, later passes only
    /// the IDs whose outcome can depend on the firmware (BOOT-1, BOOT-2,
    /// SEC-2, SEC-4, NET-4). Without it every pass runs the whole catalogue.
    #[arg(long)]
    pub ci: bool,
    /// Skip the host prerequisite check.
    #[arg(long)]
    pub no_doctor: bool,
    /// Print a JSON report on stdout (its shape and the exit codes: docs/cli.md); the human lines go to stderr.
    #[arg(long)]
    pub json: bool,
}

/// `--firmware`
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirmwareChoice {
    /// Legacy BIOS (SeaBIOS).
    Bios,
    /// UEFI (OVMF).
    Uefi,
    /// BIOS, then UEFI.
    Both,
}

/// `cargo xtask doctor`
#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// Only report; never install.
    #[arg(long)]
    pub no_install: bool,
    /// Print a JSON report on stdout (its shape and the exit codes: docs/cli.md); the human lines go to stderr.
    #[arg(long)]
    pub json: bool,
}

/// `cargo xtask ci`
#[derive(Args, Debug)]
pub struct CiArgs {
    /// Skip the slow steps (image build, verify-repro, vm-test): formatting, lints, unit tests, lock check only.
    #[arg(long)]
    pub quick: bool,
}

/// `cargo xtask verify-repro`
#[derive(Args, Debug)]
pub struct VerifyReproArgs {
    #[command(flatten)]
    pub fetch: FetchArgs,
    /// Rebuild once and compare with a published image: a sha256 (64 hex) or a manifest / .sha256 file.
    #[arg(long, value_name = "SHA256|MANIFEST")]
    pub against: Option<String>,
    /// Keep both build directories (stage caches, images) after a match (always kept on a mismatch).
    #[arg(long)]
    pub keep: bool,
    /// Never download: use only what the store already holds.
    #[arg(long)]
    pub offline: bool,
    /// Where the builds go (default: target/repro; builds in <DIR>/a and <DIR>/b).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// How many differing files, inodes or entries to list per section.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub max_diffs: usize,
    /// Skip the host prerequisite check.
    #[arg(long)]
    pub no_doctor: bool,
    /// Test the detector: write the current time into one file of build B's appliance layer.
    #[arg(long, hide = true)]
    pub inject_nondeterminism: bool,
    /// Do not build: explain the kept builds <DIR>/a and <DIR>/b again.
    #[arg(long, hide = true)]
    pub compare_only: bool,
}

/// `cargo xtask upload`
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct UploadArgs {
    /// `cleanup`: delete leftover temporary servers and keys.
    #[command(subcommand)]
    pub command: Option<UploadCommand>,
    /// The raw image (default: target/image/<name>.raw, <name> from image.toml); its <name>.manifest.json must be beside it.
    #[arg(long, value_name = "PATH")]
    pub image: Option<PathBuf>,
    /// Location of the temporary server (e.g. fsn1, nbg1, hel1, ash, hil, sin).
    #[arg(long, default_value = "fsn1", value_name = "LOCATION")]
    pub location: String,
    /// Server type of the temporary server (default: cx23 for an x86 image, cax11 for an arm one); checked before anything is created.
    #[arg(long, value_name = "TYPE")]
    pub server_type: Option<String>,
    /// An extra label for the snapshot, key=value (repeatable); openclaw-image/* labels are set by upload.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// The snapshot's description (default: spec name, OpenClaw version, build date, image sha256).
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// Upload even when a snapshot labelled with the same image sha256 exists.
    #[arg(long)]
    pub force: bool,
    /// Limit the stream to this many image bytes per second (suffixes k, M, G: powers of 1024).
    #[arg(long, value_name = "BYTES", value_parser = parse_rate)]
    pub max_rate: Option<u64>,
    /// Print a JSON report on stdout instead of the snapshot id (docs/cli.md, docs/hetzner.md).
    #[arg(long, global = true)]
    pub json: bool,
    /// `-o json` is `--json` (kept for scripts written before `--json`).
    #[arg(
        short = 'o',
        long = "output",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub output: OutputFormat,
    /// Log each API call (method, path, status, time) on stderr; the token is never shown.
    #[arg(long, global = true)]
    pub debug: bool,
}

/// What `upload` prints on stdout (`-o json` is `--json`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// The snapshot id (`upload`) or nothing (`upload cleanup`).
    Text,
    /// A JSON report.
    Json,
}

/// `cargo xtask upload <command>`
#[derive(Subcommand, Debug)]
pub enum UploadCommand {
    /// Delete the servers and SSH keys labelled openclaw-image/temporary that failed uploads left behind, older than --older-than (never snapshots).
    Cleanup(CleanupArgs),
}

/// `cargo xtask upload cleanup`
#[derive(Args, Debug)]
pub struct CleanupArgs {
    /// Only resources older than this many hours (a running upload's are younger).
    #[arg(long, default_value_t = 2.0, value_name = "HOURS")]
    pub older_than: f64,
    /// Every labelled resource, whatever its age (also a running upload's).
    #[arg(long)]
    pub all: bool,
}

fn parse_rate(arg: &str) -> Result<u64, String> {
    let (num, shift) = match arg.trim().char_indices().last() {
        Some((i, 'k' | 'K')) => (&arg[..i], 10),
        Some((i, 'm' | 'M')) => (&arg[..i], 20),
        Some((i, 'g' | 'G')) => (&arg[..i], 30),
        _ => (arg, 0),
    };
    match num.trim().parse::<u64>() {
        Ok(n) if n > 0 => n
            .checked_mul(1 << shift)
            .ok_or_else(|| format!("`{arg}` is too large")),
        _ => Err(format!(
            "`{arg}` is not a rate: a positive number of bytes per second, e.g. 50M"
        )),
    }
}

fn parse_label(arg: &str) -> Result<(String, String), String> {
    hetzner::labels::parse(arg).map_err(|e| e.to_string())
}

/// `cargo xtask bench`
#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub sources: Sources,
    /// Print the JSON (target/bench/bench.json; docs/cli.md) on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Runs of each cheap figure (no-op and warm rebuild); the median is reported.
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
    /// Only these parts, comma-separated: floor, build, noop, size, warm, vm-test, ci (default: all; vm-test takes ~50 min per firmware under TCG; ci reads the last `cargo xtask ci` run's target/ci/timings.json).
    #[arg(long, value_delimiter = ',', value_name = "PART,…")]
    pub only: Vec<String>,
    /// Firmware for the vm-test part.
    #[arg(long, value_enum, default_value = "both")]
    pub firmware: FirmwareChoice,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("1000"), Ok(1000));
        assert_eq!(parse_rate("50M"), Ok(50 << 20));
        assert_eq!(parse_rate("2k"), Ok(2048));
        assert_eq!(parse_rate("1G"), Ok(1 << 30));
        for bad in ["0", "", "fast", "5x", "-1M"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }
}
