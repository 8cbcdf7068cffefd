//! Snapshots of this image and their status: only an `available` one is
//! done; a `creating` one is waited for; an `unavailable` one is reported
//! and does not count.

use std::time::Instant;

use super::{UploadError, sha256_labels, step};
use crate::Interrupt;
use crate::api::types::Image;
use crate::api::{ApiError, Client};
use crate::labels;

/// Snapshots labelled with exactly this image sha256 (any status).
pub fn find_existing(client: &Client, sha256: &str) -> Result<Vec<Image>, ApiError> {
    let wanted = sha256_labels(sha256);
    let found = client.snapshots(&labels::selector(&wanted))?;
    // The selector already matches exactly; check again, it is cheap.
    Ok(found
        .into_iter()
        .filter(|i| wanted.iter().all(|(k, v)| i.labels.get(k) == Some(v)))
        .collect())
}

/// Poll `GET /images/{id}` until the snapshot is `available`; `unavailable`
/// or the client's action timeout fails.
pub(crate) fn wait_available(
    client: &Client,
    mut image: Image,
    interrupt: Option<&Interrupt>,
) -> Result<Image, UploadError> {
    let what = format!("waiting for snapshot {} to become available", image.id);
    let started = Instant::now();
    let mut said = false;
    loop {
        match image.status.as_str() {
            "available" => return Ok(image),
            "unavailable" => {
                return Err(UploadError::Step {
                    step: what,
                    reason: format!(
                        "Hetzner reports snapshot {} as `unavailable`; delete it (`hcloud image delete {}`) and upload again",
                        image.id, image.id
                    ),
                });
            }
            other => {
                if !said {
                    eprintln!("upload: snapshot {} is `{other}`; waiting", image.id);
                    said = true;
                }
            }
        }
        if started.elapsed() > client.options().action_timeout {
            return Err(UploadError::Step {
                step: what,
                reason: format!(
                    "still `{}` after {} s",
                    image.status,
                    started.elapsed().as_secs()
                ),
            });
        }
        if interrupt.is_some_and(Interrupt::is_set) {
            return Err(UploadError::Interrupted);
        }
        std::thread::sleep(client.options().poll_interval);
        image = client.image(image.id).map_err(step(&what))?;
    }
}

/// The snapshot that already holds this image: an `available` one, else a
/// `creating` one once it is available. `unavailable` ones are reported and
/// skipped.
pub(crate) fn usable_existing(
    client: &Client,
    sha256: &str,
    interrupt: &Interrupt,
) -> Result<Option<Image>, UploadError> {
    let found = find_existing(client, sha256).map_err(step("looking for an existing snapshot"))?;
    for i in found.iter().filter(|i| i.status == "unavailable") {
        eprintln!(
            "upload: snapshot {} holds this image but is `unavailable`; it does not count (delete it: `hcloud image delete {}`)",
            i.id, i.id
        );
    }
    if let Some(done) = found.iter().find(|i| i.status == "available") {
        return Ok(Some(done.clone()));
    }
    match found.into_iter().find(|i| i.status == "creating") {
        Some(pending) => wait_available(client, pending, Some(interrupt)).map(Some),
        None => Ok(None),
    }
}
