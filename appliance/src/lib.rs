//! The appliance itself: the files baked into the image (rendered from the
//! spec, pure functions, snapshot-tested) and the first-boot agent.

pub mod files;
pub mod firstboot;
pub mod tree;

pub use tree::{Entry, Tree};
