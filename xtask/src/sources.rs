//! Turning the shared `Sources` flags into library values.

use anyhow::Result;
use builder::locking::Project;
use builder::sources::SourceFlags;
use builder::store::Store;

use crate::flags::Sources;

/// The spec and lock files named by `--spec`, relative to the project root.
pub fn project(s: &Sources) -> Project {
    let spec = if s.spec.is_absolute() {
        s.spec.clone()
    } else {
        crate::project_root().join(&s.spec)
    };
    Project::new(&spec)
}

/// The store named by `--store`, or the default one.
pub fn open_store(s: &Sources) -> Result<Store> {
    let root = match &s.store {
        Some(p) => p.clone(),
        None => Store::default_root()?,
    };
    Store::open(&root)
}

/// Mirror and registry overrides.
pub fn source_flags(s: &Sources) -> SourceFlags {
    SourceFlags {
        mirror: s.mirror.clone(),
        security_mirror: s.security_mirror.clone(),
        npm_registry: s.npm_registry.clone(),
    }
}
