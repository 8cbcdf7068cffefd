//! `--json` leaves the JSON report alone on stdout and the human lines on
//! stderr (docs/cli.md), checked on the one command that needs neither the
//! network nor host tools: `lock --check` of the committed spec and lock.

use std::process::Command;

#[test]
fn lock_check_json_is_alone_on_stdout() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["lock", "--check", "--json"])
        .current_dir(&root)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["outcome"], "matches", "{stdout}");
    assert_eq!(report["differences"], serde_json::json!([]), "{stdout}");
    assert!(
        stderr.contains("matches"),
        "the human line goes to stderr: {stderr}"
    );
}
