//! The appliance itself: the files baked into the image (rendered from the
//! spec, pure functions, snapshot-tested) and the first-boot agent.

#[cfg(feature = "files")]
pub mod files;
pub mod firstboot;
pub mod tree;

pub use tree::{Entry, Tree};
