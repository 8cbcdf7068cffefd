//! The commands run in the rescue system (by `bash`, under `set -euo pipefail`).

use crate::ssh::shell_quote;

/// `bash -c '<script>'` as one remote command line.
fn bash(script: &str) -> String {
    format!(
        "bash -c {}",
        shell_quote(&format!("set -euo pipefail\n{script}"))
    )
}

/// Check that the tools the stream needs exist.
pub(crate) fn check_tools() -> String {
    bash(
        "for t in zstd dd sha256sum head sync; do\n  \
         command -v \"$t\" >/dev/null || { echo \"$t is missing on the rescue system\" >&2; exit 127; }\n\
         done",
    )
}

/// Discard the disk when it is a block device (a test target is a file),
/// then decompress stdin onto it and sync.
pub(crate) fn write(target: &str) -> String {
    bash(&format!(
        "dev={}\n\
         if [ -b \"$dev\" ]; then blkdiscard \"$dev\" || echo \"blkdiscard failed; writing without discard\" >&2; fi\n\
         zstd -d -q | dd of=\"$dev\" bs=4M iflag=fullblock conv=sparse status=none\n\
         sync",
        shell_quote(target)
    ))
}

/// The sha256 of the first `len` bytes of the target.
pub(crate) fn hash(target: &str, len: u64) -> String {
    bash(&format!(
        "head -c {len} {} | sha256sum",
        shell_quote(target)
    ))
}

/// The hash out of `sha256sum`'s output.
pub(crate) fn parse_hash(out: &str) -> Option<String> {
    let h = out.split_whitespace().next()?.to_ascii_lowercase();
    (h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())).then_some(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_quote_the_target() {
        let w = write("/dev/sda");
        assert!(w.starts_with("bash -c 'set -euo pipefail\n"), "{w}");
        assert!(w.contains("dev='\\''/dev/sda'\\''"), "{w}");
        assert!(w.contains("dd of=\"$dev\" bs=4M"), "{w}");
        assert_eq!(
            parse_hash(&format!("{}  -\n", "ab".repeat(32))),
            Some("ab".repeat(32))
        );
        assert_eq!(parse_hash("nope"), None);
    }
}
