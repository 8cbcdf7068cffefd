//! SEC-3's live half: searching a running guest for a secret's bytes where
//! the raw-disk scan ([`crate::diskscan`]) cannot see them — the journal
//! as `journalctl` prints it (journald compresses fields above 512 bytes,
//! so a long secret in the journal is not on the disk byte for byte) and
//! the memory file systems (`tmpfs`, `ramfs`: `/run`, `/tmp`, `/dev/shm`,
//! `/run/user/*`), which never reach the disk at all.
//!
//! The secret itself never goes to the guest: the search pattern is an
//! extended regular expression that matches exactly the secret's bytes
//! but does not contain them ([`pattern`]: each character in its own
//! bracket), so neither a command line, nor a log of the command channel,
//! nor the journal gains a copy. The journal search sends back only a
//! count and the SHA-256 of each distinct match, which the host compares
//! with the secrets' own digests ([`journal_hits`]); the memory-file-system
//! search sends back file names.

use std::collections::BTreeMap;

use crate::suite::rebuild::sha256_hex;

/// An ERE matching exactly `secret`, written without any run of the
/// secret's characters: `abc-1` → `[a][b][c][-][1]`. Characters that
/// cannot stand alone in a bracket are escaped outside one.
pub fn pattern(secret: &str) -> String {
    secret
        .chars()
        .map(|c| match c {
            '\\' => "\\\\".to_string(),
            '^' => "\\^".to_string(),
            '[' => "\\[".to_string(),
            ']' => "[]]".to_string(),
            // Cannot appear inside the single quotes the pattern travels
            // in: any character here, the digest tells the secret apart.
            '\'' => ".".to_string(),
            c => format!("[{c}]"),
        })
        .collect()
}

/// `s` in single quotes for the guest's shell (the pattern has no `'`).
fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The guest command that searches the whole journal (every boot, every
/// field, decompressed: `journalctl -o export`) for the secrets and prints
/// `<count> <sha256>` for each distinct match, nothing else.
pub fn journal_command(secrets: &[(&str, &str)]) -> String {
    let alternatives = secrets
        .iter()
        .map(|(_, value)| pattern(value))
        .collect::<Vec<_>>()
        .join("|");
    format!(
        "journalctl -o export --no-pager 2>/dev/null | {{ grep -aoE {} || true; }} | sort | uniq -c | \
         while read -r n s; do printf '%s %s\\n' \"$n\" \"$(printf %s \"$s\" | sha256sum | cut -c1-64)\"; done",
        quoted(&alternatives)
    )
}

/// How often each secret occurs in the journal, from
/// [`journal_command`]'s output: secret name → count (only those found).
/// A match whose digest is no secret's (possible only where a secret holds
/// a `'`, which [`pattern`] matches with any character) is counted under
/// `<unknown match>`.
pub fn journal_hits(secrets: &[(&str, &str)], output: &str) -> BTreeMap<String, u64> {
    let by_digest: BTreeMap<String, &str> = secrets
        .iter()
        .map(|(name, value)| (sha256_hex(value.as_bytes()), *name))
        .collect();
    let mut hits = BTreeMap::new();
    for line in output.lines() {
        let mut words = line.split_whitespace();
        let (Some(n), Some(digest)) = (words.next(), words.next()) else {
            continue;
        };
        let n: u64 = n.parse().unwrap_or(0);
        let name = by_digest.get(digest).copied().unwrap_or("<unknown match>");
        *hits.entry(name.to_string()).or_insert(0) += n;
    }
    hits
}

/// The guest command that lists, for each secret in order, the files of
/// every memory file system (`tmpfs`, `ramfs`) that hold it: a line
/// `== <index>` per secret, then one path per line. Devices, FIFOs and
/// sockets are skipped (a FIFO would block the search).
pub fn memory_fs_command(secrets: &[(&str, &str)]) -> String {
    let mut cmd = String::from(
        "dirs=$(findmnt -rn -t tmpfs,ramfs -o TARGET | tr '\\n' ' '); echo \"mounts $dirs\"; ",
    );
    for (i, (_, value)) in secrets.iter().enumerate() {
        cmd.push_str(&format!(
            "echo '== {i}'; {{ grep -rlaE -D skip --no-messages {} $dirs 2>/dev/null || true; }} | sort -u; ",
            quoted(&pattern(value))
        ));
    }
    cmd.push_str("true");
    cmd
}

/// [`memory_fs_command`]'s output: the mount points searched, and secret
/// name → the files holding it (every secret present, maybe with none).
pub fn memory_fs_hits(
    secrets: &[(&str, &str)],
    output: &str,
) -> (Vec<String>, BTreeMap<String, Vec<String>>) {
    let mut mounts = Vec::new();
    let mut hits: BTreeMap<String, Vec<String>> = secrets
        .iter()
        .map(|(name, _)| (name.to_string(), Vec::new()))
        .collect();
    let mut current: Option<&str> = None;
    for line in output.lines() {
        if let Some(m) = line.strip_prefix("mounts ") {
            mounts = m.split_whitespace().map(str::to_string).collect();
        } else if let Some(i) = line.strip_prefix("== ") {
            current = i
                .trim()
                .parse::<usize>()
                .ok()
                .and_then(|i| secrets.get(i))
                .map(|(name, _)| *name);
        } else if let Some(name) = current
            && !line.trim().is_empty()
            && let Some(files) = hits.get_mut(name)
        {
            files.push(line.trim().to_string());
        }
    }
    (mounts, hits)
}

/// Where an injected secret may sit in a memory file system: systemd's
/// credential store (`/run/credentials/…`), which is how this run hands
/// user-data to the machine (the operator's own input channel, like the
/// metadata service on Hetzner: root-only, in memory, gone at power-off).
pub fn allowed_in_memory(path: &str) -> bool {
    path.starts_with("/run/credentials/")
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    const SECRETS: [(&str, &str); 3] = [
        ("gateway-token", "0a1b2c3d4e5f60718293a4b5c6d7e8f9"),
        ("anthropic-setup-token", "sk-ant-oat01-Ab_cD-123+/=xyz"),
        ("odd", "a]b^c[d\\e.f*g$h"),
    ];

    #[test]
    fn a_pattern_never_contains_a_run_of_its_secret() {
        for (_, s) in &SECRETS[..2] {
            assert!(!pattern(s).contains(&s[..2]), "{s}");
        }
        // Bracketed one by one: no two characters of the secret are adjacent.
        let (_, hex) = SECRETS[0];
        let p = pattern(hex);
        assert!(
            hex.as_bytes()
                .windows(2)
                .all(|w| !p.as_bytes().windows(2).any(|x| x == w))
        );
        assert_eq!(pattern("a'b"), "[a].[b]");
    }

    /// Runs `cmd` as the guest's command channel does (`set -euo
    /// pipefail`); its stdout.
    fn strict_bash(cmd: &str) -> String {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!("set -euo pipefail; {cmd}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{cmd}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs the host's own grep and shell: the commands work as written,
    /// match each secret exactly, and print only digests and names.
    #[test]
    fn the_commands_find_exactly_the_secrets_with_the_hosts_grep() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("journal.txt");
        let text = format!(
            "MESSAGE=x {a} y\nMESSAGE={a}{b}\nnear miss {near}\nodd {c}\n",
            a = SECRETS[0].1,
            b = SECRETS[1].1,
            c = SECRETS[2].1,
            near = &SECRETS[0].1[1..],
        );
        std::fs::write(&log, &text).unwrap();
        let cmd = journal_command(&SECRETS).replace(
            "journalctl -o export --no-pager 2>/dev/null",
            &format!("cat {}", log.display()),
        );
        let out = strict_bash(&cmd);
        for (_, s) in SECRETS {
            assert!(!out.contains(s));
        }
        let hits = journal_hits(&SECRETS, &out);
        assert_eq!(hits.get("gateway-token"), Some(&2), "{out}");
        assert_eq!(hits.get("anthropic-setup-token"), Some(&1), "{out}");
        assert_eq!(hits.get("odd"), Some(&1), "{out}");
        assert_eq!(hits.len(), 3);

        let mem = dir.path().join("mem");
        std::fs::create_dir_all(mem.join("sub")).unwrap();
        std::fs::write(mem.join("sub/leak"), SECRETS[1].1).unwrap();
        std::fs::write(mem.join("clean"), "nothing").unwrap();
        let cmd = memory_fs_command(&SECRETS).replace(
            "$(findmnt -rn -t tmpfs,ramfs -o TARGET | tr '\\n' ' ')",
            &mem.display().to_string(),
        );
        let out = strict_bash(&cmd);
        let (mounts, hits) = memory_fs_hits(&SECRETS, &out);
        assert_eq!(mounts, [mem.display().to_string()]);
        assert_eq!(
            hits["anthropic-setup-token"],
            [mem.join("sub/leak").display().to_string()]
        );
        assert!(hits["gateway-token"].is_empty());
        assert!(hits["odd"].is_empty());
    }

    #[test]
    fn only_the_credential_store_may_hold_a_secret_in_memory() {
        assert!(allowed_in_memory(
            "/run/credentials/@system/openclaw.userdata"
        ));
        assert!(!allowed_in_memory("/run/openclaw/leak"));
        assert!(!allowed_in_memory("/tmp/credentials/x"));
    }
}
