//! `-o json`: what an upload did, as one JSON object on stdout (the shape
//! is documented in docs/hetzner.md and snapshot-tested).

use serde::Serialize;

use super::{Outcome, Written};
use crate::image::ImageInfo;
use crate::labels::Labels;

/// The report of one `upload`.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The snapshot's id (`--image` of `hcloud server create`).
    pub snapshot_id: i64,
    /// `created` (uploaded now) or `already_existed`.
    pub result: &'static str,
    /// The snapshot's description.
    pub description: String,
    /// The snapshot's labels.
    pub labels: Labels,
    /// The image file.
    pub image: String,
    /// Its size in bytes.
    pub image_bytes: u64,
    /// Its sha256, from its manifest and re-read while streaming.
    pub image_sha256: String,
    /// How it was written; `null` when nothing was uploaded.
    pub written: Option<WrittenReport>,
}

/// How the bytes reached the disk.
#[derive(Debug, Serialize)]
pub struct WrittenReport {
    /// The sha256 the rescue system computed of the device.
    pub device_sha256: String,
    /// Writes needed (2: the first read back wrong).
    pub attempts: u32,
    /// Whether zero blocks were skipped after a discard.
    pub sparse: bool,
    /// The temporary server's type.
    pub server_type: String,
}

impl Report {
    /// The report of `outcome` for `image`.
    pub fn new(image: &ImageInfo, outcome: &Outcome) -> Report {
        let (snap, result, written) = match outcome {
            Outcome::Uploaded(s, w) => (s, "created", Some(w)),
            Outcome::AlreadyPresent(s) => (s, "already_existed", None),
        };
        Report {
            snapshot_id: snap.id,
            result,
            description: snap.description.clone(),
            labels: snap.labels.clone(),
            image: image.path.display().to_string(),
            image_bytes: image.len,
            image_sha256: image.sha256.clone(),
            written: written.map(|w: &Written| WrittenReport {
                device_sha256: w.sha256.clone(),
                attempts: w.attempts,
                sparse: w.sparse,
                server_type: w.server_type.clone(),
            }),
        }
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        // Plain strings, numbers and maps: serializing cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}
