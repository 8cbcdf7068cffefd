//! The rebuild of this CI run: `cargo xtask ci` names its run
//! ([`CI_RUN_ENV`]), builds the image with a fake Hetzner token in the
//! environment ([`HCLOUD_CANARY_PREFIX`]), and `verify-repro --against`
//! the image's manifest rebuilds it from scratch and records the result
//! beside the image (`<name>.repro.json`, with the run, the manifest's own
//! sha256 and the canary). BOOT-3 compares the image under test with that
//! rebuild; INF-1 searches the image for that canary. A record of another
//! run, or of another manifest, proves nothing here.

use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The environment variable naming the `cargo xtask ci` run; set by `ci`
/// for its steps, recorded by `verify-repro`.
pub const CI_RUN_ENV: &str = "OPENCLAW_CI_RUN";

/// How every CI canary for `HCLOUD_TOKEN` begins (a fake token, never a
/// real one: only values with this prefix are ever recorded).
pub const HCLOUD_CANARY_PREFIX: &str = "openclawcicanary";

/// What `verify-repro` recorded about this run's rebuild of the image's
/// manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuild {
    /// The record's path.
    pub record: PathBuf,
    /// The CI run.
    pub run: String,
    /// The rebuilt image's sha256.
    pub sha256: String,
    /// The image sha256 the manifest names (what it was compared with).
    pub published: String,
    /// Whether the rebuild matched it.
    pub identical: bool,
    /// The canary `HCLOUD_TOKEN` the rebuild ran with, if any.
    pub hcloud_canary: Option<String>,
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex_of(&Sha256::digest(bytes))
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The rebuild record of this CI run beside `image` (whose manifest is
/// `<name>.manifest.json` beside it); `Err` says why there is none.
pub fn of_this_run(image: &Path) -> Result<Rebuild, String> {
    let Ok(run) = std::env::var(CI_RUN_ENV) else {
        return Err(format!(
            "not a `cargo xtask ci` run ({CI_RUN_ENV} unset): no rebuild of this run to compare with \
             (`cargo xtask ci` builds, rebuilds with verify-repro and tests in one run)"
        ));
    };
    let record = image.with_extension("repro.json");
    let manifest = image.with_extension("manifest.json");
    let text = std::fs::read_to_string(&record).map_err(|e| {
        format!(
            "{}: {e}: verify-repro of this run ({run}) recorded no rebuild beside the image",
            record.display()
        )
    })?;
    let manifest_bytes =
        std::fs::read(&manifest).map_err(|e| format!("{}: {e}", manifest.display()))?;
    judge_record(&record, &text, &run, &sha256_hex(&manifest_bytes))
}

/// Reads the record `text` (at `record`) as this run's (`run`) rebuild of
/// the manifest whose bytes hash to `manifest_sha256`.
pub fn judge_record(
    record: &Path,
    text: &str,
    run: &str,
    manifest_sha256: &str,
) -> Result<Rebuild, String> {
    let v: Value =
        serde_json::from_str(text).map_err(|e| format!("{} is not JSON: {e}", record.display()))?;
    let s = |p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_string);
    let recorded_run = s("/ci_run");
    if recorded_run.as_deref() != Some(run) {
        return Err(format!(
            "{} is from another run ({}), not this one ({run}): no rebuild of this run",
            record.display(),
            recorded_run
                .as_deref()
                .unwrap_or("no ci_run: not made by `cargo xtask ci`")
        ));
    }
    let against = s("/against/file_sha256");
    if against.as_deref() != Some(manifest_sha256) {
        return Err(format!(
            "{} rebuilt another manifest (its sha256 {}, this image's manifest {manifest_sha256})",
            record.display(),
            against
                .as_deref()
                .unwrap_or("not recorded: not `verify-repro --against` a manifest")
        ));
    }
    let sha256 = s("/sha256").ok_or_else(|| format!("{} has no sha256", record.display()))?;
    Ok(Rebuild {
        record: record.to_path_buf(),
        run: run.to_string(),
        sha256,
        published: s("/against/sha256").unwrap_or_default(),
        identical: v.get("identical").and_then(Value::as_bool) == Some(true),
        hcloud_canary: s("/hcloud_canary").filter(|c| c.starts_with(HCLOUD_CANARY_PREFIX)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(run: &str, file_sha: &str) -> String {
        serde_json::json!({
            "name": "x", "sha256": "aa".repeat(32), "identical": true, "builds": [],
            "against": {"sha256": "aa".repeat(32), "source": "m.json", "file_sha256": file_sha},
            "date": "d", "source_date_epoch": 1, "ci_run": run,
            "hcloud_canary": format!("{HCLOUD_CANARY_PREFIX}0123"),
        })
        .to_string()
    }

    #[test]
    fn only_this_runs_rebuild_of_this_manifest_counts() {
        let p = Path::new("x.repro.json");
        let good = judge_record(p, &record("run-1", "mm"), "run-1", "mm").expect("this run");
        assert_eq!(good.sha256, "aa".repeat(32));
        assert!(good.identical);
        assert_eq!(good.hcloud_canary.as_deref(), Some("openclawcicanary0123"));
        let other_run = judge_record(p, &record("run-0", "mm"), "run-1", "mm").unwrap_err();
        assert!(other_run.contains("another run"), "{other_run}");
        let other_manifest = judge_record(p, &record("run-1", "nn"), "run-1", "mm").unwrap_err();
        assert!(
            other_manifest.contains("another manifest"),
            "{other_manifest}"
        );
        let old = r#"{"sha256": "aa", "identical": true}"#;
        assert!(judge_record(p, old, "run-1", "mm").is_err());
    }

    #[test]
    fn hashes_bytes() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
