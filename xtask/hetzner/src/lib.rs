//! Publishes a built disk image as a Hetzner Cloud snapshot.
//!
//! The Hetzner Cloud API cannot take an image upload; a snapshot can only be
//! taken of a server's disk. So, as hcloud-upload-image does: a temporary
//! SSH key and a temporary server (powered off, labelled) are created — after
//! a pre-flight of its type from the API —, the server boots into the rescue
//! system, which is checked to be one, the image is streamed zstd-compressed
//! over SSH into `dd` on its disk, the device is read back and hashed on the
//! server and compared (written again once on a mismatch), the server is shut
//! down and snapshotted, and the server and key are deleted again — on
//! success, on every error and on Ctrl-C.
//!
//! - [`api`]: the API client (typed requests, error envelope, hcloud-go's
//!   retries, pagination, action polling, a debug log).
//! - [`ssh`]: the temporary key and the system `ssh` client.
//! - [`upload`]: the flow, the pre-flight, the cleanup guard, `cleanup` of
//!   leftovers, the duplicate check and snapshot status, the JSON report.
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
