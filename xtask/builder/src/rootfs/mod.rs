//! Root filesystems from locked packages: the local package repository,
//! mmdebstrap, and merging layers into one tarball for the disk stage.

pub mod bootstrap;
pub mod merge;
pub mod repo;
