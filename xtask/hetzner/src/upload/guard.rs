//! The cleanup guard: whatever the flow created is deleted again, on
//! success, on every error, on Ctrl-C, and (as a last resort) on drop.
//! Besides the ids it was told, it deletes every server and key carrying
//! the run's label: a `POST` that timed out on the client may have created
//! one whose id never arrived.

use std::time::{Duration, Instant};

use super::cleanup;
use crate::api::{ApiError, Client};

/// The temporary resources of one upload.
pub(crate) struct Temporaries<'c> {
    client: &'c Client,
    /// The temporary server, once created.
    pub server: Option<i64>,
    /// The temporary SSH key, once registered.
    pub ssh_key: Option<i64>,
    /// The label selector of this run's resources, once any may exist.
    pub run_selector: Option<String>,
}

/// `not_found` means somebody (or an earlier try) already deleted it.
pub(crate) fn gone(e: &ApiError) -> bool {
    matches!(e, ApiError::Api { status: 404, .. })
}

impl<'c> Temporaries<'c> {
    pub(crate) fn new(client: &'c Client) -> Temporaries<'c> {
        Temporaries {
            client,
            server: None,
            ssh_key: None,
            run_selector: None,
        }
    }

    /// The client the resources belong to.
    pub(crate) fn client(&self) -> &'c Client {
        self.client
    }

    /// Delete the server (waiting for it to be gone), then the key. Never
    /// stops at Ctrl-C. Errors name what is left and how to remove it.
    pub(crate) fn delete_all(&mut self) -> Result<(), String> {
        let mut left = Vec::new();
        if let Some(id) = self.server {
            eprintln!("upload: deleting the temporary server {id}");
            match delete_server(self.client, id) {
                Ok(()) => self.server = None,
                Err(e) => left.push(format!("server {id} ({e})")),
            }
        }
        if let Some(id) = self.ssh_key {
            eprintln!("upload: deleting the temporary SSH key {id}");
            match self.client.delete_ssh_key(id) {
                Ok(()) => self.ssh_key = None,
                Err(e) if gone(&e) => self.ssh_key = None,
                Err(e) => left.push(format!("SSH key {id} ({e})")),
            }
        }
        if let Some(selector) = self.run_selector.clone() {
            match self.sweep(&selector) {
                Ok(()) => self.run_selector = None,
                Err(more) => left.extend(more),
            }
        }
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "could not delete {}: run `cargo xtask upload cleanup`, or delete them in the Hetzner console (they cost money)",
                left.join(", ")
            ))
        }
    }
}

impl Temporaries<'_> {
    /// Delete what carries the run's label but was not known by id.
    fn sweep(&self, selector: &str) -> Result<(), Vec<String>> {
        let mut left = Vec::new();
        for r in cleanup::labelled(self.client, selector, &mut left) {
            eprintln!(
                "upload: deleting the temporary {} {} ({}), found by its label",
                r.kind, r.id, r.name
            );
            if let Err(e) = cleanup::delete(self.client, &r) {
                left.push(format!("{} {} ({e})", r.kind, r.id));
            }
        }
        match left.is_empty() {
            true => Ok(()),
            false => Err(left),
        }
    }
}

/// The server is busy with another action (`locked`, `conflict`): retry.
fn busy(e: &ApiError) -> bool {
    matches!(e, ApiError::Api { code, .. } if code == "locked" || code == "conflict")
}

/// `DELETE /servers/{id}` and wait for the deletion; while the server is
/// locked by a running action, retry for up to a minute.
pub(crate) fn delete_server(client: &Client, id: i64) -> Result<(), ApiError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match client.delete_server(id) {
            Ok(action) => return client.wait_for(&[action], None),
            Err(e) if gone(&e) => return Ok(()),
            Err(e) if busy(&e) && Instant::now() < deadline => {
                std::thread::sleep(
                    client
                        .options()
                        .poll_interval
                        .max(Duration::from_millis(100)),
                );
            }
            Err(e) => return Err(e),
        }
    }
}

impl Drop for Temporaries<'_> {
    fn drop(&mut self) {
        if (self.server.is_some() || self.ssh_key.is_some() || self.run_selector.is_some())
            && let Err(e) = self.delete_all()
        {
            eprintln!("upload: {e}");
        }
    }
}
