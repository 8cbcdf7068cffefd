//! Where the host's programs are: `PATH`, then Debian's `/usr/sbin` and
//! `/sbin`, which a user's `PATH` may lack (`docs/cli.md`, "Environment").

use std::path::PathBuf;

/// `tool`'s path on `PATH` (plus the sbin directories).
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}
