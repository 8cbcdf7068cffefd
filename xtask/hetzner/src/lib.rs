//! Publishes a built disk image as a Hetzner Cloud snapshot.
//!
//! The Hetzner Cloud API cannot take an image upload; a snapshot can only be
//! taken of a server's disk. So, as hcloud-upload-image does: a temporary
//! SSH key and a temporary server (powered off, labelled) are created, the
//! server boots into the rescue system, the image is streamed zstd-compressed
//! over SSH into `dd` on its disk, the written bytes are hashed on the server
//! and compared, the server is shut down and snapshotted, and the server and
//! key are deleted again — on success, on every error and on Ctrl-C.
//!
//! - [`api`]: the API client (typed requests, error envelope, 429 backoff,
//!   pagination, action polling).
//! - [`ssh`]: the temporary key and the system `ssh` client.
//! - [`upload`]: the flow, the cleanup guard, `cleanup` of leftovers, the
//!   duplicate check.
//! - [`image`]: the image and its manifest; [`labels`]: label syntax.
//!
//! The token comes from `HCLOUD_TOKEN` only ([`Token`]) and is never printed.

pub mod api;
pub mod image;
pub mod interrupt;
pub mod labels;
pub mod ssh;
mod stream;
mod token;
pub mod upload;

pub use interrupt::Interrupt;
pub use token::Token;
