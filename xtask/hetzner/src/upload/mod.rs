//! The upload flow, `cleanup` of leftovers, and the duplicate check.

mod cleanup;
mod guard;
pub mod preflight;
mod remote;
mod report;
mod snapshot;

use std::time::{Duration, Instant};

use crate::Interrupt;
use crate::api::types::{CreateServer, CreateSshKey, Image};
use crate::api::{ApiError, Client};
use crate::image::ImageInfo;
use crate::labels::{self, Labels};
use crate::ssh::{SshError, Target, TempKey};
use crate::stream::{self, StreamError};

use guard::Temporaries;
use remote::{Facts, Zeros};

pub use cleanup::{Cleaned, CleanupOptions, Resource, cleanup};
pub use report::{Report, WrittenReport};
pub use snapshot::find_existing;

/// The label every temporary server and key carries; `cleanup` selects it.
pub const TEMPORARY_LABEL: &str = "openclaw-image/temporary";
/// The prefix of the labels `upload` sets on snapshots.
pub const LABEL_PREFIX: &str = "openclaw-image/";
/// The label naming one run; its resources are found by it after a
/// client-side timeout.
pub const RUN_LABEL: &str = "openclaw-image/run";
/// A sha256 (64 hex) is longer than a label value may be (63): it is split
/// into two labels of 32 characters; both together match exactly.
pub const SHA256_LABELS: [&str; 2] = ["openclaw-image/sha256-1", "openclaw-image/sha256-2"];

/// What the user chooses (flags) and what only tests change.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// Location of the temporary server, e.g. `fsn1`.
    pub location: String,
    /// Server type of the temporary server; `None`: `cx23` for an x86
    /// image, `cax11` for an arm one ([`preflight::default_server_type`]).
    pub server_type: Option<String>,
    /// The system image the temporary server is created with (never booted).
    pub base_image: String,
    /// Extra labels for the snapshot.
    pub labels: Labels,
    /// The snapshot's description (default: name, version, date, sha256).
    pub description: Option<String>,
    /// Upload even when a snapshot of this image exists.
    pub force: bool,
    /// SSH port of the rescue system.
    pub ssh_port: u16,
    /// SSH user of the rescue system.
    pub ssh_user: String,
    /// The disk written in the rescue system (a file in tests).
    pub target_device: String,
    /// How many times SSH is tried after power-on.
    pub ssh_attempts: u32,
    /// Pause between two SSH tries.
    pub ssh_retry_interval: Duration,
    /// How long a graceful shutdown may take before a power-off.
    pub shutdown_timeout: Duration,
    /// Limit the stream to this many image bytes per second.
    pub max_rate: Option<u64>,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            location: "fsn1".into(),
            server_type: None,
            base_image: "debian-13".into(),
            labels: Labels::new(),
            description: None,
            force: false,
            ssh_port: 22,
            ssh_user: "root".into(),
            target_device: "/dev/sda".into(),
            ssh_attempts: 30,
            ssh_retry_interval: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(120),
            max_rate: None,
        }
    }
}

/// How an upload ended.
#[derive(Debug)]
pub enum Outcome {
    /// A new snapshot, and how its bytes were written.
    Uploaded(Image, Written),
    /// A snapshot with the same image sha256 existed; nothing was uploaded.
    AlreadyPresent(Image),
}

/// How the image reached the disk.
#[derive(Debug, Clone)]
pub struct Written {
    /// The server type used.
    pub server_type: String,
    /// The sha256 the rescue system computed of the device's first
    /// image-length bytes (equal to the image's).
    pub sha256: String,
    /// Writes needed (2: the first read back wrong and was redone).
    pub attempts: u32,
    /// Whether the final write skipped zero blocks after a discard.
    pub sparse: bool,
}

/// Why an upload failed.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// A precondition: fix the input and retry.
    #[error("{0}")]
    Invalid(String),
    /// A step failed; the temporary resources were deleted.
    #[error("{step}: {reason}")]
    Step {
        /// What was being done.
        step: String,
        /// What went wrong.
        reason: String,
    },
    /// Ctrl-C; the temporary resources were deleted.
    #[error("interrupted; the temporary server and SSH key were deleted")]
    Interrupted,
    /// The upload failed and so did deleting what it made.
    #[error("{original}; then {cleanup}")]
    CleanupFailed {
        /// The upload's own error.
        original: String,
        /// What is left and how to remove it.
        cleanup: String,
    },
}

/// Errors that can mean "Ctrl-C" rather than a failure.
trait MaybeInterrupted: std::fmt::Display {
    fn interrupted(&self) -> bool;
}

impl MaybeInterrupted for ApiError {
    fn interrupted(&self) -> bool {
        matches!(self, ApiError::Interrupted)
    }
}

impl MaybeInterrupted for SshError {
    fn interrupted(&self) -> bool {
        matches!(self, SshError::Interrupted)
    }
}

/// Name the step an API or SSH error happened in (Ctrl-C stays Ctrl-C).
fn step<E: MaybeInterrupted>(what: &str) -> impl FnOnce(E) -> UploadError + '_ {
    move |e| match e.interrupted() {
        true => UploadError::Interrupted,
        false => UploadError::Step {
            step: what.to_string(),
            reason: e.to_string(),
        },
    }
}

/// The labels that identify the image: both sha256 halves.
pub fn sha256_labels(sha256: &str) -> Labels {
    let (a, b) = sha256.split_at(sha256.len() / 2);
    [(SHA256_LABELS[0], a), (SHA256_LABELS[1], b)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Every label of the snapshot: the image's sha256, OpenClaw version, spec
/// name and build date, then the user's.
pub fn snapshot_labels(image: &ImageInfo, extra: &Labels) -> Result<Labels, UploadError> {
    let mut out = sha256_labels(&image.sha256);
    for (k, v) in [
        ("openclaw-version", &image.openclaw_version),
        ("spec", &image.spec_name),
        ("build-date", &image.build_date),
    ] {
        out.insert(format!("{LABEL_PREFIX}{k}"), v.clone());
    }
    for (k, v) in extra {
        if k.starts_with(LABEL_PREFIX) {
            return Err(UploadError::Invalid(format!(
                "label `{k}`: the {LABEL_PREFIX} prefix is set by upload itself; choose another key"
            )));
        }
        out.insert(k.clone(), v.clone());
    }
    for (k, v) in &out {
        labels::validate(k, v).map_err(|e| UploadError::Invalid(e.to_string()))?;
    }
    Ok(out)
}

/// The snapshot's description.
pub fn description(image: &ImageInfo) -> String {
    format!(
        "{} (OpenClaw {}, built {}) sha256:{}",
        image.spec_name, image.openclaw_version, image.build_date, image.sha256
    )
}

/// A short random id for the temporary resources' names.
fn run_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    format!("{:08x}", h.finish() as u32)
}

fn say(n: u32, what: &str) {
    eprintln!("upload: [{n}/9] {what}");
}

/// Publish the image as a snapshot (see the crate docs for the flow).
/// Everything temporary is deleted before this returns, whatever happened.
pub fn upload(
    client: &Client,
    image: &ImageInfo,
    options: &UploadOptions,
    interrupt: &Interrupt,
) -> Result<Outcome, UploadError> {
    let labels = snapshot_labels(image, &options.labels)?;
    for tool in ["ssh", "ssh-keygen"] {
        if hostutil::which(tool, &[]).is_none() {
            return Err(UploadError::Invalid(format!(
                "`{tool}` not found: install openssh-client (apt-get install openssh-client)"
            )));
        }
    }
    if image.len == 0 || image.len & 511 != 0 {
        // The read-back uses O_DIRECT, which reads whole sectors.
        return Err(UploadError::Invalid(format!(
            "{} is {} bytes, not a whole number of 512-byte sectors: not a disk image; rebuild it with `cargo xtask build-image`",
            image.path.display(),
            image.len
        )));
    }
    let types = client
        .server_types()
        .map_err(step("looking up the server types"))?;
    let server_type = preflight::check(
        &types,
        options.server_type.as_deref(),
        image,
        &options.location,
    )
    .map_err(UploadError::Invalid)?
    .name;
    if let Some(first) = snapshot::usable_existing(client, &image.sha256, interrupt)? {
        if !options.force {
            return Ok(Outcome::AlreadyPresent(first));
        }
        eprintln!(
            "upload: snapshot {} already holds this image; uploading again (--force)",
            first.id
        );
    }
    let mut temps = Temporaries::new(client);
    let result = run(&mut temps, image, options, &server_type, &labels, interrupt);
    let cleanup = temps.delete_all();
    match (result, cleanup) {
        (Ok((img, w)), Ok(())) => Ok(Outcome::Uploaded(img, w)),
        (Err(e), Ok(())) => Err(e),
        (Ok((img, _)), Err(c)) => Err(UploadError::CleanupFailed {
            original: format!("snapshot {} was created", img.id),
            cleanup: c,
        }),
        (Err(e), Err(c)) => Err(UploadError::CleanupFailed {
            original: e.to_string(),
            cleanup: c,
        }),
    }
}

/// The steps between creating the key and taking the snapshot.
fn run(
    temps: &mut Temporaries,
    image: &ImageInfo,
    options: &UploadOptions,
    server_type: &str,
    snapshot_labels: &Labels,
    interrupt: &Interrupt,
) -> Result<(Image, Written), UploadError> {
    let client = temps_client(temps);
    let name = format!("openclaw-upload-{}", run_id());
    let temp_labels: Labels = [(TEMPORARY_LABEL, "upload"), (RUN_LABEL, &name[16..])]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let check = |interrupt: &Interrupt| match interrupt.is_set() {
        true => Err(UploadError::Interrupted),
        false => Ok(()),
    };

    say(1, "registering a temporary SSH key");
    let key = TempKey::generate(&name).map_err(step("making a temporary SSH key"))?;
    // From here on, what carries the run's label is deleted at the end
    // even if its id never arrived (a `POST` that timed out).
    temps.run_selector = Some(format!("{RUN_LABEL}={}", &name[16..]));
    let registered = client
        .create_ssh_key(&CreateSshKey {
            name: &name,
            public_key: key.public(),
            labels: &temp_labels,
        })
        .map_err(step("registering the temporary SSH key"))?;
    temps.ssh_key = Some(registered.id);
    check(interrupt)?;

    say(
        2,
        &format!(
            "creating the temporary server {name} ({server_type}, {}), powered off",
            options.location
        ),
    );
    let created = client
        .create_server(&CreateServer {
            name: &name,
            server_type,
            image: &options.base_image,
            location: &options.location,
            start_after_create: false,
            ssh_keys: vec![registered.id.to_string()],
            labels: &temp_labels,
        })
        .map_err(step("creating the temporary server"))?;
    temps.server = Some(created.server.id);
    let server = created.server.id;
    let mut actions = vec![created.action];
    actions.extend(created.next_actions);
    client
        .wait_for(&actions, Some(interrupt))
        .map_err(step("creating the temporary server"))?;

    say(3, "enabling the rescue system");
    let a = client
        .enable_rescue(server, registered.id)
        .map_err(step("enabling the rescue system"))?;
    client
        .wait_for(&[a], Some(interrupt))
        .map_err(step("enabling the rescue system"))?;

    say(4, "powering on into the rescue system");
    let a = client
        .server_action(server, "poweron")
        .map_err(step("powering on"))?;
    client
        .wait_for(&[a], Some(interrupt))
        .map_err(step("powering on"))?;
    let ip = match created.server.public_net.ipv4 {
        Some(v4) => v4.ip,
        None => client
            .server(server)
            .map_err(step("reading the server's address"))?
            .public_net
            .ipv4
            .map(|v| v.ip)
            .ok_or_else(|| UploadError::Invalid(format!("server {server} has no public IPv4")))?,
    };
    let target = Target {
        host: ip,
        port: options.ssh_port,
        user: options.ssh_user.clone(),
        key: &key,
    };

    say(
        5,
        &format!(
            "waiting for SSH on {}:{} and checking it is the rescue system",
            target.host, target.port
        ),
    );
    target
        .wait_until_up(options.ssh_attempts, options.ssh_retry_interval, interrupt)
        .map_err(step("waiting for the rescue system"))?;
    let facts = target
        .run(&remote::facts())
        .map_err(step("checking the rescue system"))?;
    Facts::parse(&facts)
        .check_rescue(&options.target_device)
        .map_err(|reason| UploadError::Step {
            step: "checking the rescue system".into(),
            reason,
        })?;

    let written = write_and_verify(&target, image, options, server_type, interrupt)?;
    check(interrupt)?;

    say(8, "shutting the server down");
    shut_down(client, server, options.shutdown_timeout, interrupt)?;

    say(9, "taking the snapshot");
    let desc = options
        .description
        .clone()
        .unwrap_or_else(|| description(image));
    let snap = client
        .create_snapshot(server, &desc, snapshot_labels)
        .map_err(step("creating the snapshot"))?;
    // Not interruptible: the server is locked until the snapshot is done,
    // so it could not be deleted before anyway.
    client
        .wait_for(&[snap.action], None)
        .map_err(step("waiting for the snapshot"))?;
    let image = snapshot::wait_available(client, snap.image, None)?;
    Ok((image, written))
}

/// Write the image (steps 6 and 7) and hash the device; on a mismatch
/// write again, every byte, once; then fail with both hashes.
fn write_and_verify(
    target: &Target,
    image: &ImageInfo,
    options: &UploadOptions,
    server_type: &str,
    interrupt: &Interrupt,
) -> Result<Written, UploadError> {
    let mut zeros = Zeros::DiscardThenSparse;
    let mut attempts = 0;
    loop {
        attempts += 1;
        say(
            6,
            &format!(
                "streaming {} ({} MiB, zstd) into {}{}",
                image.path.display(),
                image.len >> 20,
                options.target_device,
                match zeros {
                    Zeros::DiscardThenSparse => "",
                    Zeros::WriteAll => ", every byte (second try)",
                }
            ),
        );
        let stderr = stream_to(target, image, options, zeros, interrupt)?;
        let sparse = zeros == Zeros::DiscardThenSparse && !stderr.contains(remote::NO_DISCARD);
        if zeros == Zeros::DiscardThenSparse && !sparse {
            eprintln!("upload: blkdiscard failed on the server; every byte was written");
        }
        say(
            7,
            "reading the disk back (O_DIRECT) and hashing it on the server",
        );
        let out = target
            .run(&remote::hash(&options.target_device, image.len))
            .map_err(step("hashing the written disk"))?;
        let written = remote::read_back(&out).ok_or_else(|| UploadError::Step {
            step: "hashing the written disk".into(),
            reason: format!("no sha256 in `{}`", out.trim()),
        })?;
        if written == image.sha256 {
            return Ok(Written {
                server_type: server_type.to_string(),
                sha256: written,
                attempts,
                sparse,
            });
        }
        if zeros == Zeros::WriteAll {
            return Err(UploadError::Step {
                step: "checking the written disk".into(),
                reason: format!(
                    "after two writes the server's disk still hashes to {written}, the image to {}: \
                     the bytes were damaged on the way or the disk does not keep them; upload again",
                    image.sha256
                ),
            });
        }
        eprintln!(
            "upload: the server's disk hashes to {written}, the image to {}; writing every byte again",
            image.sha256
        );
        zeros = Zeros::WriteAll;
    }
}

fn temps_client<'c>(temps: &Temporaries<'c>) -> &'c Client {
    temps.client()
}

/// Stream the image over SSH into the remote `dd`; check that what was
/// read is what the manifest says. The remote stderr (the discard's note).
fn stream_to(
    target: &Target,
    image: &ImageInfo,
    options: &UploadOptions,
    zeros: Zeros,
    interrupt: &Interrupt,
) -> Result<String, UploadError> {
    let what = "streaming the image";
    let mut child = target
        .spawn_with_stdin(&remote::write(&options.target_device, zeros))
        .map_err(step(what))?;
    let Some(stdin) = child.child.stdin.take() else {
        child.kill();
        return Err(UploadError::Invalid("ssh has no stdin".into()));
    };
    let sent = stream::send(image, stdin, interrupt, options.max_rate);
    let read_hash = match sent {
        Ok(h) => h,
        Err(StreamError::Interrupted) => {
            child.kill();
            return Err(UploadError::Interrupted);
        }
        Err(StreamError::Read(e)) => {
            child.kill();
            return Err(UploadError::Step {
                step: what.into(),
                reason: format!("reading {}: {e}", image.path.display()),
            });
        }
        Err(StreamError::Write(e)) => {
            let stderr = child.kill();
            // Ctrl-C in a terminal reaches `ssh` too; its exit may be seen
            // before the handler has set the flag.
            std::thread::sleep(Duration::from_millis(200));
            if interrupt.is_set() {
                return Err(UploadError::Interrupted);
            }
            return Err(UploadError::Step {
                step: what.into(),
                reason: format!("the remote side stopped reading ({e}): {stderr}"),
            });
        }
    };
    let (_, stderr) = child.finish().map_err(step(what))?;
    if read_hash != image.sha256 {
        return Err(UploadError::Invalid(format!(
            "{} hashes to {read_hash}, its manifest says {}: the image changed after it was built; rebuild it",
            image.path.display(),
            image.sha256
        )));
    }
    Ok(stderr)
}

/// `shutdown` (ACPI) and wait until the server is `off`; `poweroff` when it
/// takes longer than `timeout`.
fn shut_down(
    client: &Client,
    server: i64,
    timeout: Duration,
    interrupt: &Interrupt,
) -> Result<(), UploadError> {
    let what = "shutting the server down";
    let a = client
        .server_action(server, "shutdown")
        .map_err(step(what))?;
    client.wait_for(&[a], Some(interrupt)).map_err(step(what))?;
    let started = Instant::now();
    while started.elapsed() < timeout {
        if client.server(server).map_err(step(what))?.status == "off" {
            return Ok(());
        }
        if interrupt.is_set() {
            return Err(UploadError::Interrupted);
        }
        std::thread::sleep(client.options().poll_interval);
    }
    eprintln!("upload: no clean shutdown after {timeout:?}; powering off (the disk was synced)");
    let a = client
        .server_action(server, "poweroff")
        .map_err(step(what))?;
    client.wait_for(&[a], Some(interrupt)).map_err(step(what))
}

/// How to use the snapshot: printed after an upload (and when it existed).
pub fn usage(image: &Image, server_type: &str, options: &UploadOptions) -> String {
    let id = image.id;
    format!(
        "Create a server from it, with the first-boot user-data (docs/first-boot.md) and a firewall without inbound rules (docs/hetzner.md):\n  \
         hcloud server create --name openclaw --image {id} --type {} --location {} --user-data-from-file userdata.toml --firewall openclaw-no-inbound\n\
         Or move an existing server to it (its disk is replaced):\n  \
         hcloud server rebuild --image {id} <server>\n",
        server_type, options.location
    )
}
