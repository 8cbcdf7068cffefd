//! The upload flow, `cleanup` of leftovers, and the duplicate check.

mod guard;
mod remote;

use std::time::{Duration, Instant};

use crate::Interrupt;
use crate::api::types::{CreateServer, CreateSshKey, Image};
use crate::api::{ApiError, Client};
use crate::image::ImageInfo;
use crate::labels::{self, Labels};
use crate::ssh::{self, SshError, Target, TempKey};
use crate::stream::{self, StreamError};

use guard::Temporaries;

/// The label every temporary server and key carries; `cleanup` selects it.
pub const TEMPORARY_LABEL: &str = "openclaw-image/temporary";
/// The prefix of the labels `upload` sets on snapshots.
pub const LABEL_PREFIX: &str = "openclaw-image/";
/// A sha256 (64 hex) is longer than a label value may be (63): it is split
/// into two labels of 32 characters; both together match exactly.
pub const SHA256_LABELS: [&str; 2] = ["openclaw-image/sha256-1", "openclaw-image/sha256-2"];

/// What the user chooses (flags) and what only tests change.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// Location of the temporary server, e.g. `fsn1`.
    pub location: String,
    /// Server type of the temporary server; its architecture must be the image's.
    pub server_type: String,
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
            server_type: "cx23".into(),
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
    /// A new snapshot.
    Uploaded(Image),
    /// A snapshot with the same image sha256 existed; nothing was uploaded.
    AlreadyPresent(Image),
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

/// Snapshots labelled with exactly this image sha256.
pub fn find_existing(client: &Client, sha256: &str) -> Result<Vec<Image>, ApiError> {
    let wanted = sha256_labels(sha256);
    let found = client.snapshots(&labels::selector(&wanted))?;
    // The selector already matches exactly; check again, it is cheap.
    Ok(found
        .into_iter()
        .filter(|i| wanted.iter().all(|(k, v)| i.labels.get(k) == Some(v)))
        .collect())
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
        if !ssh::on_path(tool) {
            return Err(UploadError::Invalid(format!(
                "`{tool}` not found: install openssh-client (apt-get install openssh-client)"
            )));
        }
    }
    let st = client
        .server_type(&options.server_type)
        .map_err(step("looking up the server type"))?
        .ok_or_else(|| {
            UploadError::Invalid(format!(
                "server type `{}` does not exist (see `hcloud server-type list`)",
                options.server_type
            ))
        })?;
    if st.architecture != image.architecture {
        return Err(UploadError::Invalid(format!(
            "server type `{}` is {}, the image is {}: choose a {} server type (e.g. {})",
            st.name,
            st.architecture,
            image.architecture,
            image.architecture,
            if image.architecture == "arm" {
                "cax11"
            } else {
                "cx23"
            }
        )));
    }
    let existing =
        find_existing(client, &image.sha256).map_err(step("looking for an existing snapshot"))?;
    if let Some(first) = existing.into_iter().next() {
        if !options.force {
            return Ok(Outcome::AlreadyPresent(first));
        }
        eprintln!(
            "upload: snapshot {} already holds this image; uploading again (--force)",
            first.id
        );
    }
    let mut temps = Temporaries::new(client);
    let result = run(&mut temps, image, options, &labels, interrupt);
    let cleanup = temps.delete_all();
    match (result, cleanup) {
        (Ok(img), Ok(())) => Ok(Outcome::Uploaded(img)),
        (Err(e), Ok(())) => Err(e),
        (Ok(img), Err(c)) => Err(UploadError::CleanupFailed {
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
    snapshot_labels: &Labels,
    interrupt: &Interrupt,
) -> Result<Image, UploadError> {
    let client = temps_client(temps);
    let name = format!("openclaw-upload-{}", run_id());
    let temp_labels: Labels = [
        (TEMPORARY_LABEL, "upload"),
        ("openclaw-image/run", &name[16..]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let check = |interrupt: &Interrupt| match interrupt.is_set() {
        true => Err(UploadError::Interrupted),
        false => Ok(()),
    };

    say(1, "registering a temporary SSH key");
    let key = TempKey::generate(&name).map_err(step("making a temporary SSH key"))?;
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
            "creating the temporary server {name} ({}, {}), powered off",
            options.server_type, options.location
        ),
    );
    let created = client
        .create_server(&CreateServer {
            name: &name,
            server_type: &options.server_type,
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
        &format!("waiting for SSH on {}:{}", target.host, target.port),
    );
    target
        .wait_until_up(options.ssh_attempts, options.ssh_retry_interval, interrupt)
        .map_err(step("waiting for the rescue system"))?;
    target
        .run(&remote::check_tools())
        .map_err(step("checking the rescue system's tools"))?;

    say(
        6,
        &format!(
            "streaming {} ({} MiB, zstd) into {}",
            image.path.display(),
            image.len >> 20,
            options.target_device
        ),
    );
    stream_to(&target, image, options, interrupt)?;

    say(7, "checking the sha256 of the written bytes on the server");
    let out = target
        .run(&remote::hash(&options.target_device, image.len))
        .map_err(step("hashing the written disk"))?;
    let written = remote::parse_hash(&out).ok_or_else(|| UploadError::Step {
        step: "hashing the written disk".into(),
        reason: format!("no sha256 in `{}`", out.trim()),
    })?;
    if written != image.sha256 {
        return Err(UploadError::Step {
            step: "checking the written disk".into(),
            reason: format!(
                "the server's disk hashes to {written}, the image to {}: the bytes were damaged on the way",
                image.sha256
            ),
        });
    }
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
    Ok(snap.image)
}

fn temps_client<'c>(temps: &Temporaries<'c>) -> &'c Client {
    temps.client()
}

/// Stream the image over SSH into the remote `dd`; check that what was
/// read is what the manifest says.
fn stream_to(
    target: &Target,
    image: &ImageInfo,
    options: &UploadOptions,
    interrupt: &Interrupt,
) -> Result<(), UploadError> {
    let what = "streaming the image";
    let mut child = target
        .spawn_with_stdin(&remote::write(&options.target_device))
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
    child.finish().map_err(step(what))?;
    if read_hash != image.sha256 {
        return Err(UploadError::Invalid(format!(
            "{} hashes to {read_hash}, its manifest says {}: the image changed after it was built; rebuild it",
            image.path.display(),
            image.sha256
        )));
    }
    Ok(())
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

/// What `cleanup` removed.
#[derive(Debug, Default)]
pub struct Cleaned {
    /// Names of the deleted servers.
    pub servers: Vec<String>,
    /// Names of the deleted SSH keys.
    pub ssh_keys: Vec<String>,
}

/// Delete every server and SSH key labelled [`TEMPORARY_LABEL`] (leftovers
/// of uploads that could not clean up). Snapshots are never touched.
pub fn cleanup(client: &Client) -> Result<Cleaned, UploadError> {
    let mut done = Cleaned::default();
    for s in client
        .servers(TEMPORARY_LABEL)
        .map_err(step("listing temporary servers"))?
    {
        guard::delete_server(client, s.id)
            .map_err(step(&format!("deleting server {} ({})", s.id, s.name)))?;
        done.servers.push(s.name);
    }
    for k in client
        .ssh_keys(TEMPORARY_LABEL)
        .map_err(step("listing temporary SSH keys"))?
    {
        client
            .delete_ssh_key(k.id)
            .map_err(step(&format!("deleting SSH key {} ({})", k.id, k.name)))?;
        done.ssh_keys.push(k.name);
    }
    Ok(done)
}

/// How to use the snapshot: printed after an upload (and when it existed).
pub fn usage(image: &Image, options: &UploadOptions) -> String {
    let id = image.id;
    format!(
        "Create a server from it, with the first-boot user-data (docs/first-boot.md) and a firewall without inbound rules (docs/hetzner.md):\n  \
         hcloud server create --name openclaw --image {id} --type {} --location {} --user-data-from-file userdata.toml --firewall openclaw-no-inbound\n\
         Or move an existing server to it (its disk is replaced):\n  \
         hcloud server rebuild --image {id} <server>\n",
        options.server_type, options.location
    )
}
