//! What the upload tests share: the stand-in API, the loopback sshd, a
//! small image with its manifest, options, and a timeout for every test.
#![allow(dead_code)]

pub mod mock;
pub mod openapi;
pub mod pattern;
pub mod sshd;

use std::path::{Path, PathBuf};
use std::time::Duration;

use hetzner::Token;
use hetzner::api::{Client, ClientOptions};
use hetzner::image::ImageInfo;
use hetzner::upload::UploadOptions;
use sha2::{Digest, Sha256};

/// The token the stand-in accepts.
pub const TOKEN: &str = "test-token-0123456789abcdef";

/// Run `f` on a thread; fail the test if it takes longer than `secs`.
#[track_caller]
pub fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(Ok(v)) => v,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("test did not finish within {secs} s"),
    }
}

/// A raw image of `mib` MiB: pseudo-random runs with zero runs between
/// them and at the end, and its manifest beside it.
pub fn make_image(dir: &Path, mib: usize) -> ImageInfo {
    make_image_for(dir, mib, "amd64")
}

/// [`make_image`] of a Debian architecture (`amd64`, `arm64`).
pub fn make_image_for(dir: &Path, mib: usize, debian_arch: &str) -> ImageInfo {
    let mut bytes = vec![0u8; mib << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let chunks = mib * 2;
    for (i, chunk) in bytes.chunks_mut(512 << 10).enumerate() {
        if i % 3 == 1 || i + 1 == chunks {
            continue; // zero runs, and a zero tail
        }
        for b in chunk {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }
    image_of(dir, &bytes, debian_arch)
}

/// `bytes` as the image, with its manifest beside it.
pub fn image_of(dir: &Path, bytes: &[u8], debian_arch: &str) -> ImageInfo {
    let path = dir.join("appliance.raw");
    std::fs::write(&path, bytes).expect("writing the image");
    let sha = hex::encode(Sha256::digest(bytes));
    std::fs::write(
        dir.join("appliance.manifest.json"),
        serde_json::json!({
            "name": "openclaw-appliance", "image_sha256": sha, "source_date_epoch": 1763942400,
            "openclaw": {"version": "2026.9.6"},
            "debian_packages": [{"architecture": debian_arch}, {"architecture": "all"}]
        })
        .to_string(),
    )
    .expect("writing the manifest");
    ImageInfo::load(&path).expect("loading the image")
}

/// The options of a client of the stand-in: short polls and retries,
/// every call logged.
pub fn client_options() -> ClientOptions {
    ClientOptions {
        poll_interval: Duration::from_millis(20),
        action_timeout: Duration::from_secs(20),
        attempts: 4,
        retry_base: Duration::from_millis(20),
        max_backoff: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
        debug: true,
    }
}

/// A client of the stand-in with [`client_options`].
pub fn client(url: &str, token: &str) -> Client {
    Client::new(url, Token::new(token), client_options()).expect("client")
}

/// Options aimed at the loopback sshd, writing to `target`.
pub fn options(port: u16, user: &str, target: &Path) -> UploadOptions {
    UploadOptions {
        ssh_port: port,
        ssh_user: user.to_string(),
        target_device: target.display().to_string(),
        ssh_attempts: 20,
        ssh_retry_interval: Duration::from_millis(250),
        shutdown_timeout: Duration::from_secs(5),
        ..UploadOptions::default()
    }
}

/// The disk file in a test's directory.
pub fn disk(dir: &Path) -> PathBuf {
    dir.join("disk.img")
}
