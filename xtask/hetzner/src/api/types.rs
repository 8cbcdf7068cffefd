//! The request and response shapes used, as the API reference documents
//! them (only the fields this crate reads; unknown fields are ignored).

use serde::{Deserialize, Serialize};

use crate::labels::Labels;

/// An action: the API's handle on asynchronous work.
#[derive(Debug, Clone, Deserialize)]
pub struct Action {
    /// Its id, polled with `GET /actions?id=…`.
    pub id: i64,
    /// What it does, e.g. `create_server`.
    pub command: String,
    /// `running`, `success` or `error`.
    pub status: String,
    /// Percent done.
    #[serde(default)]
    pub progress: i64,
    /// Set when `status` is `error`.
    pub error: Option<ActionError>,
}

/// Why an action failed.
#[derive(Debug, Clone, Deserialize)]
pub struct ActionError {
    /// Machine-readable code.
    pub code: String,
    /// Human-readable message.
    pub message: String,
}

/// A server (the fields used).
#[derive(Debug, Clone, Deserialize)]
pub struct Server {
    /// Its id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// `initializing`, `starting`, `running`, `stopping`, `off`, …
    pub status: String,
    /// Its public addresses.
    pub public_net: PublicNet,
    /// When it was created (RFC 3339).
    #[serde(default)]
    pub created: String,
    /// Its labels.
    #[serde(default)]
    pub labels: Labels,
}

/// A server's public network.
#[derive(Debug, Clone, Deserialize)]
pub struct PublicNet {
    /// The primary IPv4, if any.
    pub ipv4: Option<Ipv4>,
}

/// A public IPv4.
#[derive(Debug, Clone, Deserialize)]
pub struct Ipv4 {
    /// The address.
    pub ip: String,
}

/// An SSH key registered with the project.
#[derive(Debug, Clone, Deserialize)]
pub struct SshKey {
    /// Its id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// When it was created (RFC 3339).
    #[serde(default)]
    pub created: String,
    /// Its labels.
    #[serde(default)]
    pub labels: Labels,
}

/// An image (snapshot, backup, system or app image).
#[derive(Debug, Clone, Deserialize)]
pub struct Image {
    /// Its id, the value of `--image` for `hcloud server create`.
    pub id: i64,
    /// Its description.
    #[serde(default)]
    pub description: String,
    /// `available`, `creating` or `unavailable`.
    pub status: String,
    /// `snapshot`, `backup`, `system` or `app`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its size in GB once created (what is billed).
    pub image_size: Option<f64>,
    /// When it was created.
    #[serde(default)]
    pub created: String,
    /// Its labels.
    #[serde(default)]
    pub labels: Labels,
}

/// A server type (the fields used).
#[derive(Debug, Clone, Deserialize)]
pub struct ServerType {
    /// e.g. `cx23`.
    pub name: String,
    /// `x86` or `arm`.
    pub architecture: String,
    /// The disk of a server of this type, in GB (10^9 bytes).
    pub disk: f64,
    /// Deprecated everywhere (the API's older field).
    #[serde(default)]
    pub deprecated: Option<bool>,
    /// Deprecated everywhere, with dates (the API's older field).
    #[serde(default)]
    pub deprecation: Option<serde_json::Value>,
    /// The locations it is offered in.
    #[serde(default)]
    pub locations: Vec<ServerTypeLocation>,
}

/// A location a server type is offered in.
#[derive(Debug, Clone, Deserialize)]
pub struct ServerTypeLocation {
    /// e.g. `fsn1`.
    pub name: String,
    /// Set when the type is deprecated in this location.
    #[serde(default)]
    pub deprecation: Option<serde_json::Value>,
}

impl ServerType {
    /// Deprecated as a whole.
    pub fn is_deprecated(&self) -> bool {
        self.deprecated == Some(true) || self.deprecation.is_some()
    }

    /// Offered, not deprecated, in `location`.
    pub fn offered_in(&self, location: &str) -> bool {
        self.locations
            .iter()
            .any(|l| l.name == location && l.deprecation.is_none())
    }
}

/// `POST /ssh_keys`
#[derive(Debug, Serialize)]
pub struct CreateSshKey<'a> {
    /// Unique name.
    pub name: &'a str,
    /// OpenSSH public key line.
    pub public_key: &'a str,
    /// Labels.
    pub labels: &'a Labels,
}

/// `POST /servers`
#[derive(Debug, Serialize)]
pub struct CreateServer<'a> {
    /// Unique name.
    pub name: &'a str,
    /// e.g. `cx23`.
    pub server_type: &'a str,
    /// The image it is created from (never booted here: it boots the rescue system).
    pub image: &'a str,
    /// e.g. `fsn1`.
    pub location: &'a str,
    /// `false`: rescue must be enabled before the first boot.
    pub start_after_create: bool,
    /// Key ids (so no root password is mailed).
    pub ssh_keys: Vec<String>,
    /// Labels.
    pub labels: &'a Labels,
}

/// `POST /servers/{id}/actions/enable_rescue`
#[derive(Debug, Serialize)]
pub struct EnableRescue {
    /// `linux64`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Key ids allowed to log in to the rescue system.
    pub ssh_keys: Vec<i64>,
}

/// `POST /servers/{id}/actions/create_image`
#[derive(Debug, Serialize)]
pub struct CreateImage<'a> {
    /// Free text.
    pub description: &'a str,
    /// `snapshot`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Labels.
    pub labels: &'a Labels,
}

/// `{ "action": … }`
#[derive(Debug, Deserialize)]
pub struct ActionResponse {
    /// The action started.
    pub action: Action,
}

/// `POST /servers` → 201
#[derive(Debug, Deserialize)]
pub struct CreateServerResponse {
    /// The new server.
    pub server: Server,
    /// Its creation.
    pub action: Action,
    /// What runs after it.
    #[serde(default)]
    pub next_actions: Vec<Action>,
}

/// `POST /servers/{id}/actions/create_image` → 201
#[derive(Debug, Deserialize)]
pub struct CreateImageResponse {
    /// The snapshotting.
    pub action: Action,
    /// The new image.
    pub image: Image,
}

/// `{ "server": … }`
#[derive(Debug, Deserialize)]
pub struct ServerResponse {
    /// The server.
    pub server: Server,
}

/// `{ "ssh_key": … }`
#[derive(Debug, Deserialize)]
pub struct SshKeyResponse {
    /// The key.
    pub ssh_key: SshKey,
}

/// `{ "image": … }`
#[derive(Debug, Deserialize)]
pub struct ImageResponse {
    /// The image.
    pub image: Image,
}
