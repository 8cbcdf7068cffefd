//! Debian archive access: mirrors, signed release files, package indexes and closure resolution.
//!
//! [`load_index`] downloads and verifies the suites' indexes (the only
//! network access here), [`resolve`] computes one package set's closure,
//! [`merge_sets`] unions the closures for the lock, and
//! [`Index::stanza`] gives back the raw control stanzas of the chosen
//! packages (the build writes a local `Packages` file from them).

pub mod control;
pub mod index;
pub mod mirror;
pub mod relation;
pub mod release;
pub mod resolve;
pub mod version;

#[cfg(test)]
mod live_tests;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use image_spec::lock::{Deb, Release};

pub use index::{Index, Package};
pub use mirror::{Archives, host_archives};
pub use resolve::merge_sets;

/// Downloads, verifies and merges the `Packages` indexes of `suites`
/// (`trixie`, `trixie-updates` from the main root, `*-security` from the
/// security root) for `components` and `arch` (plus `all`). Compressed
/// indexes are cached in `cache_dir`. Returns the merged index and one
/// [`Release`] record per suite, in the order of `suites`.
pub fn load_index(
    archives: &Archives,
    suites: &[String],
    components: &[String],
    arch: &str,
    cache_dir: &Path,
) -> Result<(Index, Vec<Release>)> {
    let agent = release::agent()?;
    let mut index = Index::new();
    let mut releases = Vec::new();
    for suite in suites {
        let (root, archive) = archives.for_suite(suite);
        let fetched =
            release::fetch_suite(&agent, root, archive, suite, components, arch, cache_dir)?;
        for file in fetched.packages {
            index.add_packages(suite, archive, arch, &file.url, file.text)?;
        }
        releases.push(fetched.release);
    }
    Ok((index, releases))
}

/// The closure of the package set `set` (`host`, `sandbox`, `tools`): what
/// `mmdebstrap --variant=minbase --include=<roots>` would install, without
/// Recommends. `preferred` (name → version) keeps earlier pins when the
/// index still has them. See [`resolve::resolve`] for the rules.
pub fn resolve(
    index: &Index,
    set: &str,
    roots: &[String],
    preferred: &BTreeMap<String, String>,
) -> Result<Vec<Deb>> {
    resolve::resolve(index, set, roots, preferred)
}
