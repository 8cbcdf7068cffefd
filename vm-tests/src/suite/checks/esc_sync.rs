//! ESC-2: the workspace sync, attacked from inside the sandbox.
//!
//! ESC-2 plants, from inside a sandbox container the gateway created (as
//! the container's user), everything a sandboxed agent could leave in its
//! workspace for a host-side process to run: a `.git` (a directory, then a
//! file pointing elsewhere in the workspace) with hooks and a config
//! setting `core.hooksPath`, `core.fsmonitor`, `core.sshCommand`, a pager,
//! editor, askpass, aliases, a filter, diff and merge driver, a credential
//! helper and an `ext::` remote; a `.gitattributes` naming that filter; a
//! `.gitmodules`; `.npmrc` and shell rc files. Each planted command writes
//! a marker at host paths the container cannot reach (the sync's state
//! directory, the workspace under its *host* path, the home, the host's
//! temporary directories): a marker can only come from the host running
//! it. The check then starts the sync unit as root and looks for markers
//! with the harness's root shell.

use anyhow::Result;

use super::agt;
use super::{Ctx, as_user};
use crate::suite::report::Outcome;
use hostutil::shell_quote;

/// The sync's system unit (INF-2, ESC-2).
const SYNC_UNIT: &str = "openclaw-workspace-sync.service";
/// A file whose content each pass changes, so each pass must commit.
const CANARY: &str = "esc2-canary.txt";
/// Where the planted commands' scripts live, relative to the workspace.
const PLANT_DIR: &str = ".esc2";
/// The marker file name prefix.
const MARKER: &str = ".esc2-marker-";
/// A syntactically valid ed25519 host key, pinned only when the harness
/// configures the sync itself (no remote answers for it).
const DUMMY_HOST_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

/// Every planted command, by name: each becomes `<workspace>/.esc2/<name>`
/// and writes the marker `<name>`.
const PLANTED: &[&str] = &[
    "hook-pre-commit",
    "hook-prepare-commit-msg",
    "hook-commit-msg",
    "hook-post-commit",
    "hook-pre-push",
    "hook-reference-transaction",
    "hook-post-checkout",
    "hook-post-rewrite",
    "hook-pre-rebase",
    "hook-post-merge",
    "hook-post-index-change",
    "hook-pre-auto-gc",
    "fsmonitor",
    "sshcommand",
    "pager",
    "editor",
    "askpass",
    "alias",
    "filter-clean",
    "filter-smudge",
    "textconv",
    "diff",
    "merge",
    "credential",
    "ext",
    "gitmodules",
    "npmrc",
    "rc",
];

/// Paths of the sync's world on the guest, from the gateway user's home.
struct Paths {
    home: String,
    /// The workspace as the host sees it.
    workspace: String,
    /// The sync's state directory (holds its git dir).
    state: String,
    /// The host's own temporary directories.
    host_tmp: Vec<String>,
}

impl Paths {
    fn new(user: &str) -> Paths {
        let home = format!("/home/{user}");
        Paths {
            workspace: format!("{home}/.openclaw/workspace"),
            state: format!("{home}/.local/state/openclaw-appliance"),
            home,
            host_tmp: vec!["/var/tmp".into(), "/tmp".into()],
        }
    }

    /// Directories a hijacked sync could write a marker to and the
    /// container cannot: the state directory and the workspace under its
    /// host path (writable by the sync), the home, and the host's own
    /// temporary directories (seen only if the sync had no private ones).
    fn marker_dirs(&self) -> Vec<String> {
        let mut dirs = vec![
            self.state.clone(),
            self.workspace.clone(),
            self.home.clone(),
        ];
        dirs.extend(self.host_tmp.iter().cloned());
        dirs
    }

    /// A shell glob for the markers, one per marker directory.
    fn marker_globs(&self) -> String {
        let globs: Vec<String> = self
            .marker_dirs()
            .iter()
            .map(|d| format!("\"{d}\"/{MARKER}*"))
            .collect();
        globs.join(" ")
    }

    fn git_dir(&self) -> String {
        format!("{}/workspace.git", self.state)
    }
}

/// `.git` as a directory, or as a file naming a git dir elsewhere in the
/// workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GitKind {
    Dir,
    File,
}

/// The planting script, run inside the sandbox in `/workspace`. Paths in
/// what it writes are the *host's* (`paths.workspace`): that is where a
/// host process would find them.
fn plant_script(paths: &Paths, kind: GitKind, pass: u32) -> String {
    let ws = &paths.workspace;
    let plant = format!("{ws}/{PLANT_DIR}");
    let touches: String = paths
        .marker_dirs()
        .iter()
        .map(|d| format!("touch \"{d}/{MARKER}$n\" 2>/dev/null; "))
        .collect();
    let mut s = String::from("set -eu\ncd /workspace\n");
    s.push_str(&format!(
        "rm -rf .git {PLANT_DIR} nested\nmkdir -p {PLANT_DIR}\n"
    ));
    // One script per planted command: its markers, then filters pass the
    // data through and the rest exit at once (nothing waits on its input,
    // so a hijacked sync ends instead of hanging to its timeout).
    let (filters, rest): (Vec<&str>, Vec<&str>) = PLANTED
        .iter()
        .partition(|n| n.starts_with("filter-") || **n == "textconv");
    for (names, tail) in [(filters, "exec cat"), (rest, "exit 0")] {
        s.push_str(&format!(
            "for n in {}; do\n  printf '#!/bin/sh\\nn=%s\\n{touches}\\n{tail}\\n' \"$n\" > {PLANT_DIR}/$n\n  chmod 755 {PLANT_DIR}/$n\ndone\n",
            names.join(" ")
        ));
    }
    let gitdir = match kind {
        GitKind::Dir => ".git".to_string(),
        GitKind::File => format!("{PLANT_DIR}/evil.git"),
    };
    s.push_str(&format!(
        "mkdir -p {gitdir}/hooks {gitdir}/objects {gitdir}/refs/heads\n\
         printf 'ref: refs/heads/main\\n' > {gitdir}/HEAD\n\
         for h in {PLANT_DIR}/hook-*; do cp \"$h\" {gitdir}/hooks/\"${{h##*/hook-}}\"; done\n"
    ));
    let hooks_host = match kind {
        GitKind::Dir => format!("{ws}/.git/hooks"),
        GitKind::File => format!("{plant}/evil.git/hooks"),
    };
    let config = format!(
        "[core]\n\trepositoryformatversion = 0\n\tbare = false\n\thooksPath = {hooks_host}\n\
         \tfsmonitor = {plant}/fsmonitor\n\tsshCommand = {plant}/sshcommand\n\
         \tpager = {plant}/pager\n\teditor = {plant}/editor\n\taskPass = {plant}/askpass\n\
         [alias]\n\tadd = !{plant}/alias\n\tcommit = !{plant}/alias\n\tpush = !{plant}/alias\n\
         \tfetch = !{plant}/alias\n\trebase = !{plant}/alias\n\tls-remote = !{plant}/alias\n\
         [filter \"evil\"]\n\tclean = {plant}/filter-clean\n\tsmudge = {plant}/filter-smudge\n\
         [diff \"evil\"]\n\ttextconv = {plant}/textconv\n\tcommand = {plant}/diff\n\
         [merge \"evil\"]\n\tdriver = {plant}/merge\n\
         [credential]\n\thelper = !{plant}/credential\n\
         [protocol]\n\tallow = always\n\
         [remote \"origin\"]\n\turl = ext::{plant}/ext\n\
         [submodule]\n\trecurse = true\n"
    );
    s.push_str(&format!("cat > {gitdir}/config <<'ESC2'\n{config}ESC2\n"));
    if kind == GitKind::File {
        s.push_str(&format!(
            "printf 'gitdir: %s\\n' '{plant}/evil.git' > .git\n"
        ));
    }
    s.push_str(&format!(
        "printf '* filter=evil diff=evil merge=evil\\n' > .gitattributes\n\
         printf '[submodule \"nested\"]\\n\\tpath = nested\\n\\turl = ext::{plant}/gitmodules\\n\\tfetchRecurseSubmodules = true\\n' > .gitmodules\n\
         printf 'script-shell={plant}/npmrc\\nonload-script={plant}/npmrc\\n' > .npmrc\n\
         for rc in .bashrc .profile .bash_profile .bash_login .bash_logout; do\n\
         \x20 printf '%s\\n' '{plant}/rc' > \"$rc\"\n\
         done\n\
         printf 'pass {pass}\\n' > {CANARY}\n\
         echo planted\n"
    ));
    s
}

/// Removes old markers (root, on the host) before planting.
fn clear_markers_script(paths: &Paths) -> String {
    format!("rm -f {}", paths.marker_globs())
}

/// Lists the markers present on the host, one path a line.
fn scan_markers_script(paths: &Paths) -> String {
    format!("ls -1d {} 2>/dev/null || true", paths.marker_globs())
}

/// Removes the plants from the workspace (root, on the host).
fn cleanup_script(paths: &Paths) -> String {
    format!(
        "cd {} && rm -rf .git {PLANT_DIR} nested .gitattributes .gitmodules .npmrc \
         .bashrc .profile .bash_profile .bash_login .bash_logout {CANARY}",
        shell_quote(&paths.workspace)
    )
}

/// What one pass saw.
#[derive(Debug, Default)]
struct PassResult {
    /// `systemctl start` exit code.
    exit: i32,
    /// The sync's journal for this run.
    journal: String,
    /// The canary as committed in the sync's own git dir (empty if none).
    committed: String,
    /// The marker paths found on the host.
    markers: String,
}

/// Whether the journal shows the pinned ssh being run: one of ssh's own
/// messages, or a completed sync (which needs it).
fn ssh_attempted(journal: &str) -> bool {
    journal.contains("workspace synced:")
        || [
            "ssh: ",
            "Can't open user config file",
            "Host key verification failed",
            "Permission denied (publickey",
            "Could not resolve hostname",
            "Connection refused",
            "Connection timed out",
            "No route to host",
        ]
        .iter()
        .any(|m| journal.contains(m))
}

/// ESC-2's verdict over the passes: no marker anywhere, every pass's canary
/// committed in the sync's git dir (the add and commit ran over the plants),
/// the pinned ssh run, and, when a remote was served, the sync completed.
fn judge(passes: &[(GitKind, u32, PassResult)], expect_push: bool) -> (bool, Vec<String>) {
    let mut ok = true;
    let mut lines = Vec::new();
    for (kind, pass, r) in passes {
        let markers: Vec<&str> = r.markers.lines().filter(|l| !l.is_empty()).collect();
        let committed = r.committed.trim() == format!("pass {pass}");
        let tried = ssh_attempted(&r.journal);
        let synced = r.exit == 0 && r.journal.contains("workspace synced:");
        let pass_ok = markers.is_empty() && committed && tried && (synced || !expect_push);
        ok &= pass_ok;
        lines.push(format!(
            "pass {pass} (.git as a {kind:?}): {}; canary committed in the sync's git dir: {committed}; \
             pinned ssh run: {tried}; sync {}",
            if markers.is_empty() {
                "no marker on the host".to_string()
            } else {
                format!("MARKERS ON THE HOST: {}", markers.join(", "))
            },
            if synced {
                "pushed".to_string()
            } else if expect_push {
                format!("did not push (exit {})", r.exit)
            } else {
                format!("stopped at the network step as expected (exit {})", r.exit)
            },
        ));
    }
    (ok, lines)
}

/// Runs a script inside the sandbox container as its configured user.
fn in_container(ctx: &mut Ctx<'_>, name: &str, script: &str) -> Result<(i32, String)> {
    ctx.machine.execute(&format!(
        "docker exec {} bash -c {} 2>&1",
        shell_quote(name),
        shell_quote(script)
    ))
}

/// ESC-2: whatever a sandbox plants in its workspace, the sync runs none of it.
pub fn esc_2(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    if let Some(outcome) = agt::docker_gate(ctx)? {
        return Ok(outcome);
    }
    let sb = match agt::sandbox(ctx)? {
        Ok(sb) => sb,
        Err(why) => {
            return Ok(Outcome::NotRun(format!(
                "no sandbox container created by the gateway to plant from: {why}"
            )));
        }
    };
    let paths = Paths::new(&ctx.facts.user);
    let repo_file = format!("{}/.config/openclaw-appliance/workspace-repo", paths.home);
    let known_hosts = format!("{}/.ssh/workspace-known-hosts", paths.home);
    let configured = ctx
        .machine
        .execute(&format!("test -s {}", shell_quote(&repo_file)))?
        .0
        == 0;
    // Not configured by user-data: point the sync at a remote that does not
    // exist, with a pinned key, so it runs up to its network step (add and
    // commit run first); removed afterwards.
    let mut made = Vec::new();
    if !configured {
        let user = &ctx.facts.user;
        ctx.machine.succeed(&format!(
            "install -d -m 700 -o {user} -g {user} {home}/.config {home}/.config/openclaw-appliance {home}/.ssh && \
             printf 'openclaw-workspace:/nonexistent/esc2.git\\n' > {repo_file} && \
             chown {user}: {repo_file} && chmod 600 {repo_file}",
            home = paths.home
        ))?;
        made.push(repo_file.clone());
    }
    if ctx
        .machine
        .execute(&format!("test -s {}", shell_quote(&known_hosts)))?
        .0
        != 0
    {
        let user = &ctx.facts.user;
        ctx.machine.succeed(&format!(
            "printf 'openclaw-workspace {DUMMY_HOST_KEY}\\n' > {known_hosts} && \
             chown {user}: {known_hosts} && chmod 600 {known_hosts}"
        ))?;
        made.push(known_hosts.clone());
    }
    let served = match (configured, ctx.net, ctx.git_remote) {
        (true, Some(net), Some(remote)) => Some(remote.serve(net)?),
        _ => None,
    };

    let mut passes = Vec::new();
    let mut planted_out = String::new();
    for (kind, pass) in [(GitKind::Dir, 1), (GitKind::File, 2)] {
        ctx.machine.succeed(&clear_markers_script(&paths))?;
        let (code, out) = in_container(ctx, &sb.name, &plant_script(&paths, kind, pass))?;
        if code != 0 || !out.contains("planted") {
            ctx.machine.execute(&cleanup_script(&paths))?;
            return Ok(Outcome::Fail(format!(
                "could not plant in /workspace from {} (exit {code}): {}",
                sb.origin,
                out.trim()
            )));
        }
        planted_out = out;
        let (exit, _) = ctx
            .machine
            .execute(&format!("systemctl start {SYNC_UNIT} 2>&1"))?;
        // This run's lines only: a oneshot unit keeps its last invocation's id.
        let journal = ctx.machine.succeed(&format!(
            "id=$(systemctl show -p InvocationID --value {SYNC_UNIT}); \
             [ -z \"$id\" ] || journalctl --no-pager -o cat _SYSTEMD_INVOCATION_ID=\"$id\" || true"
        ))?;
        let (_, committed) = ctx.machine.execute(&as_user(
            ctx,
            &format!(
                "GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null git --git-dir={} show HEAD:{CANARY} 2>&1",
                shell_quote(&paths.git_dir())
            ),
        ))?;
        let markers = ctx.machine.succeed(&scan_markers_script(&paths))?;
        passes.push((
            kind,
            pass,
            PassResult {
                exit,
                journal,
                committed,
                markers,
            },
        ));
    }
    drop(served);
    ctx.machine.execute(&cleanup_script(&paths))?;
    ctx.machine.execute(&clear_markers_script(&paths))?;
    for f in &made {
        ctx.machine.execute(&format!("rm -f {}", shell_quote(f)))?;
    }

    let (ok, mut lines) = judge(
        &passes,
        configured && ctx.net.is_some() && ctx.git_remote.is_some(),
    );
    lines.insert(0, format!("planted from {}", sb.origin));
    if !configured {
        lines.push(
            "workspace sync not configured by user-data: the harness pointed it at a remote \
             that does not exist (removed afterwards)"
                .into(),
        );
    }
    for (_, pass, r) in &passes {
        let tail: Vec<&str> = r.journal.lines().rev().take(6).collect();
        lines.push(format!(
            "pass {pass} journal (last lines, newest first): {}",
            tail.join(" | ")
        ));
    }
    lines.push(format!("planting output: {}", planted_out.trim()));
    Ok(if ok {
        Outcome::Pass(lines.join("\n"))
    } else {
        Outcome::Fail(lines.join("\n"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths() -> Paths {
        Paths::new("openclaw")
    }

    /// Runs the planting script in a temporary "/workspace" (bash, the
    /// script's `cd /workspace` rewritten) and returns the tree it made.
    fn planted_tree(kind: GitKind) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let script = plant_script(&paths(), kind, 1)
            .replace("cd /workspace", &format!("cd {}", dir.path().display()));
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "planted");
        (dir, script)
    }

    #[test]
    fn plants_every_item_with_host_paths() {
        let (dir, script) = planted_tree(GitKind::Dir);
        let ws = dir.path();
        let config = std::fs::read_to_string(ws.join(".git/config")).unwrap();
        for key in [
            "hooksPath = /home/openclaw/.openclaw/workspace/.git/hooks",
            "fsmonitor = /home/openclaw/.openclaw/workspace/.esc2/fsmonitor",
            "sshCommand = /home/openclaw/.openclaw/workspace/.esc2/sshcommand",
            "clean = /home/openclaw/.openclaw/workspace/.esc2/filter-clean",
            "[alias]",
            "helper = !/home/openclaw/.openclaw/workspace/.esc2/credential",
        ] {
            assert!(config.contains(key), "{key} not in {config}");
        }
        for hook in [
            "pre-commit",
            "post-commit",
            "pre-push",
            "reference-transaction",
        ] {
            let text = std::fs::read_to_string(ws.join(".git/hooks").join(hook)).unwrap();
            assert!(text.contains(&format!("n=hook-{hook}")), "{text}");
        }
        // Each planted command writes its marker in every host directory.
        let m = std::fs::read_to_string(ws.join(".esc2/fsmonitor")).unwrap();
        for d in paths().marker_dirs() {
            assert!(m.contains(&format!("touch \"{d}/{MARKER}$n\"")), "{m}");
        }
        for f in [
            ".gitattributes",
            ".gitmodules",
            ".npmrc",
            ".bashrc",
            ".profile",
            CANARY,
        ] {
            assert!(ws.join(f).is_file(), "{f} not planted");
        }
        assert!(
            !script.contains("/tmp/esc2"),
            "markers must be host-only paths"
        );

        let (dir, _) = planted_tree(GitKind::File);
        let dotgit = std::fs::read_to_string(dir.path().join(".git")).unwrap();
        assert_eq!(
            dotgit,
            "gitdir: /home/openclaw/.openclaw/workspace/.esc2/evil.git\n"
        );
        assert!(dir.path().join(".esc2/evil.git/hooks/pre-commit").is_file());
    }

    #[test]
    fn planted_commands_write_their_markers() {
        // What the host would see if it ran one: the marker, data passed on.
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let p = Paths {
            home: d.clone(),
            workspace: d.clone(),
            state: d.clone(),
            host_tmp: vec![d],
        };
        let script = plant_script(&p, GitKind::Dir, 1)
            .replace("cd /workspace", &format!("cd {}", dir.path().display()));
        let st = std::process::Command::new("bash")
            .arg("-c")
            .arg(&script)
            .status()
            .unwrap();
        assert!(st.success());
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo data | {}/.esc2/filter-clean",
                dir.path().display()
            ))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "data\n");
        assert!(dir.path().join(format!("{MARKER}filter-clean")).is_file());
        // The others do not wait on their input (held open here).
        let mut child = std::process::Command::new("timeout")
            .arg("10")
            .arg(dir.path().join(".esc2/sshcommand"))
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let held = child.stdin.take();
        let st = child.wait().unwrap();
        drop(held);
        assert!(st.success(), "{st}");
        assert!(dir.path().join(format!("{MARKER}sshcommand")).is_file());
    }

    #[test]
    fn scripts_name_every_marker_dir() {
        let scan = scan_markers_script(&paths());
        let clear = clear_markers_script(&paths());
        for d in paths().marker_dirs() {
            assert!(scan.contains(&format!("\"{d}\"/{MARKER}*")), "{scan}");
            assert!(clear.contains(&format!("\"{d}\"/{MARKER}*")), "{clear}");
        }
        assert!(
            cleanup_script(&paths())
                .starts_with("cd '/home/openclaw/.openclaw/workspace' && rm -rf .git .esc2")
        );
    }

    fn result(exit: i32, journal: &str, committed: &str, markers: &str) -> PassResult {
        PassResult {
            exit,
            journal: journal.into(),
            committed: committed.into(),
            markers: markers.into(),
        }
    }

    #[test]
    fn judges_markers_commits_and_ssh() {
        let unreachable = "ssh: Could not resolve hostname openclaw-workspace\n\
                           cannot reach the workspace remote (git ls-remote: 128)";
        let synced = "workspace synced: abc1234";
        // Not configured: stopped at the network, nothing ran: pass.
        let (ok, lines) = judge(
            &[
                (GitKind::Dir, 1, result(1, unreachable, "pass 1\n", "")),
                (GitKind::File, 2, result(1, unreachable, "pass 2\n", "")),
            ],
            false,
        );
        assert!(ok, "{lines:?}");
        assert!(lines[0].contains("no marker on the host"));
        // A served remote must receive the push.
        assert!(judge(&[(GitKind::Dir, 1, result(0, synced, "pass 1", ""))], true).0);
        assert!(
            !judge(
                &[(GitKind::Dir, 1, result(1, unreachable, "pass 1", ""))],
                true
            )
            .0
        );
        // A marker fails, and is named.
        let (ok, lines) = judge(
            &[(
                GitKind::Dir,
                1,
                result(
                    0,
                    synced,
                    "pass 1",
                    "/home/openclaw/.local/state/openclaw-appliance/.esc2-marker-hook-pre-commit\n",
                ),
            )],
            false,
        );
        assert!(!ok);
        assert!(lines[0].contains("MARKERS ON THE HOST"), "{lines:?}");
        assert!(lines[0].contains("hook-pre-commit"), "{lines:?}");
        // No commit (add/commit never ran over the plants) proves nothing.
        assert!(
            !judge(
                &[(
                    GitKind::Dir,
                    1,
                    result(1, unreachable, "fatal: invalid object name 'HEAD'", "")
                )],
                false
            )
            .0
        );
        // The pinned ssh never ran (e.g. no pinned key): not proven.
        assert!(
            !judge(
                &[(
                    GitKind::Dir,
                    1,
                    result(1, "workspace committed locally, not synced", "pass 1", "")
                )],
                false
            )
            .0
        );
    }
}
