//! systemd units: the gateway as a system unit running as its user (SRV-1,
//! SRV-7), the sandbox image check (AGT-2), the order first boot → image →
//! gateway, and the hourly workspace git sync (INF-2).

use image_spec::Spec;

use super::Context;
use super::sandbox_runtime::{self, DOCKER_HOST, DOCKER_ROOT};
use crate::firstboot;
use crate::tree::Tree;

use crate::firstboot::DONE_MARKER as FIRSTBOOT_DONE;
use crate::firstboot::WORKSPACE_REPO;

/// Checks the sandbox image baked into Docker's store (AGT-2).
const CHECK_SANDBOX_SCRIPT: &str = "usr/libexec/openclaw-appliance/check-sandbox-image";
/// The gateway's system unit (SRV-1).
pub const GATEWAY_UNIT: &str = "openclaw-gateway.service";
/// Commits OpenClaw's agent workspace and syncs it with the remote (INF-2).
const WORKSPACE_SYNC_SCRIPT: &str = "usr/libexec/openclaw-appliance/workspace-sync";
/// The user units of the workspace sync (INF-2).
const WORKSPACE_SYNC_UNIT: &str = "openclaw-workspace-sync";
/// OpenClaw's default agent workspace, relative to home (the spec does not
/// set `agents.defaults.workspace`).
const AGENT_WORKSPACE: &str = ".openclaw/workspace";
/// The branch of the remote the workspace is synced with.
const WORKSPACE_BRANCH: &str = "main";

pub(super) fn render(tree: &mut Tree, spec: &Spec, ctx: &Context) {
    // First boot (SEC-2, SEC-4) and the metadata firewall on every boot (SEC-5).
    tree.file(
        "etc/systemd/system/openclaw-firstboot.service",
        0o644,
        firstboot::unit_text(),
    );
    tree.symlink(
        "etc/systemd/system/multi-user.target.wants/openclaw-firstboot.service",
        "/etc/systemd/system/openclaw-firstboot.service",
    );
    let fw = firstboot::METADATA_FIREWALL_UNIT;
    tree.file(
        &format!("etc/systemd/system/{fw}"),
        0o644,
        firstboot::metadata_firewall_unit_text(),
    );
    tree.symlink(
        &format!("etc/systemd/system/sysinit.target.wants/{fw}"),
        &format!("/etc/systemd/system/{fw}"),
    );

    let user = spec.gateway_user();
    let home = format!("home/{}", user.name);
    let (uid, gid) = (user.uid, user.gid);

    tree.file(
        CHECK_SANDBOX_SCRIPT,
        0o755,
        check_sandbox_script(&spec.sandbox.image, &ctx.sandbox_image_id),
    );
    tree.file(
        "etc/systemd/system/openclaw-sandbox-image.service",
        0o644,
        format!(
            "# AGT-2: the sandbox image is baked into the sandbox daemon's image store,\n\
             # never loaded or pulled; this only checks its ID, as the gateway user\n\
             # through the socket the gateway uses (ESC-1).\n\
             [Unit]\n\
             Description=Check the baked OpenClaw sandbox image in the sandbox daemon\n\
             Wants=user@{sandbox_uid}.service\n\
             After=user@{sandbox_uid}.service openclaw-firstboot.service\n\
             \n\
             [Service]\n\
             Type=oneshot\n\
             RemainAfterExit=yes\n\
             User={user}\n\
             Group={user}\n\
             Environment=DOCKER_HOST={DOCKER_HOST}\n\
             ExecStart=/{CHECK_SANDBOX_SCRIPT}\n\
             TimeoutStartSec=15min\n\
             \n\
             [Install]\n\
             WantedBy=multi-user.target\n",
            sandbox_uid = sandbox_runtime::UID,
            user = user.name,
        ),
    );
    tree.symlink(
        "etc/systemd/system/multi-user.target.wants/openclaw-sandbox-image.service",
        "/etc/systemd/system/openclaw-sandbox-image.service",
    );

    // SRV-1: a system unit, which the user it runs as cannot change, mask
    // or override; it starts after first boot and the sandbox image check.
    tree.file(
        &format!("etc/systemd/system/{GATEWAY_UNIT}"),
        0o644,
        gateway_unit(spec),
    );
    tree.symlink(
        &format!("etc/systemd/system/multi-user.target.wants/{GATEWAY_UNIT}"),
        &format!("/etc/systemd/system/{GATEWAY_UNIT}"),
    );

    // Linger keeps a user manager running without a login (none is needed
    // by the image's own units).
    if user.linger {
        tree.file(&format!("var/lib/systemd/linger/{}", user.name), 0o644, "");
    }

    tree.dir(&format!("{home}/.config"), 0o700, uid, gid);
    tree.dir(&format!("{home}/.config/systemd"), 0o755, uid, gid);
    tree.dir(&format!("{home}/.config/systemd/user"), 0o755, uid, gid);

    // INF-2: the hourly workspace sync; inert until first boot wrote the remote.
    tree.file(WORKSPACE_SYNC_SCRIPT, 0o755, workspace_sync_script());
    tree.dir(
        &format!("{home}/.config/systemd/user/timers.target.wants"),
        0o755,
        uid,
        gid,
    );
    let unit = WORKSPACE_SYNC_UNIT;
    tree.owned_file(
        &format!("{home}/.config/systemd/user/{unit}.service"),
        0o644,
        uid,
        gid,
        workspace_sync_service(),
    );
    tree.owned_file(
        &format!("{home}/.config/systemd/user/{unit}.timer"),
        0o644,
        uid,
        gid,
        workspace_sync_timer(),
    );
    tree.symlink(
        &format!("{home}/.config/systemd/user/timers.target.wants/{unit}.timer"),
        &format!("/{home}/.config/systemd/user/{unit}.timer"),
    );
}

/// The sync job's oneshot user service (INF-2), sandboxed like the gateway.
fn workspace_sync_service() -> String {
    format!(
        "# INF-2: commits OpenClaw's agent workspace and syncs it with the remote\n\
         # first boot configured (deploy key through the SSH host alias).\n\
         [Unit]\n\
         Description=Sync the OpenClaw agent workspace with its git remote\n\
         ConditionPathExists=%h/{WORKSPACE_REPO}\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart=/{WORKSPACE_SYNC_SCRIPT}\n\
         TimeoutStartSec=15min\n\
         Nice=10\n\
         UMask=0077\n\
         NoNewPrivileges=yes\n\
         LockPersonality=yes\n\
         RestrictRealtime=yes\n\
         RestrictSUIDSGID=yes\n\
         SystemCallArchitectures=native\n\
         RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n"
    )
}

/// The hourly, persistent timer of the sync job (INF-2).
fn workspace_sync_timer() -> String {
    format!(
        "# INF-2: hourly; a run missed while the machine was off happens at boot.\n\
         [Unit]\n\
         Description=Hourly sync of the OpenClaw agent workspace\n\
         ConditionPathExists=%h/{WORKSPACE_REPO}\n\
         \n\
         [Timer]\n\
         OnCalendar=hourly\n\
         Persistent=true\n\
         RandomizedDelaySec=5min\n\
         \n\
         [Install]\n\
         WantedBy=timers.target\n"
    )
}

/// The sync script (INF-2): runs as the gateway user. The remote is the
/// host-alias URL first boot wrote; the deploy key is chosen by the SSH
/// config, never named here, and nothing secret is printed.
fn workspace_sync_script() -> String {
    format!(
        "#!/bin/bash\n\
         # INF-2: commit OpenClaw's agent workspace and sync it with the remote\n\
         # in ~/{WORKSPACE_REPO} (written by first boot).\n\
         set -euo pipefail\n\
         remote=$(head -n 1 \"$HOME/{WORKSPACE_REPO}\")\n\
         if [ -z \"$remote\" ]; then\n\
         \x20   echo \"~/{WORKSPACE_REPO} is empty\" >&2\n\
         \x20   exit 1\n\
         fi\n\
         workspace=\"$HOME/{AGENT_WORKSPACE}\"\n\
         branch={WORKSPACE_BRANCH}\n\
         export GIT_AUTHOR_NAME='OpenClaw appliance' GIT_AUTHOR_EMAIL='openclaw@localhost'\n\
         export GIT_COMMITTER_NAME=\"$GIT_AUTHOR_NAME\" GIT_COMMITTER_EMAIL=\"$GIT_AUTHOR_EMAIL\"\n\
         export GIT_TERMINAL_PROMPT=0\n\
         mkdir -p \"$workspace\"\n\
         cd \"$workspace\"\n\
         if [ ! -d .git ]; then\n\
         \x20   git init -q -b \"$branch\"\n\
         fi\n\
         if git remote get-url origin >/dev/null 2>&1; then\n\
         \x20   git remote set-url origin \"$remote\"\n\
         else\n\
         \x20   git remote add origin \"$remote\"\n\
         fi\n\
         git add -A\n\
         if [ -n \"$(git status --porcelain)\" ]; then\n\
         \x20   git commit -q -m \"workspace sync $(date -u +%Y-%m-%dT%H:%M:%SZ)\"\n\
         fi\n\
         # 0: the remote has the branch; 2: it does not yet (first push).\n\
         found=0\n\
         git ls-remote --exit-code --heads origin \"$branch\" >/dev/null || found=$?\n\
         case $found in\n\
         \x20   0) git pull -q --rebase origin \"$branch\" ;;\n\
         \x20   2) ;;\n\
         \x20   *) echo \"cannot reach the workspace remote (git ls-remote: $found)\" >&2; exit 1 ;;\n\
         esac\n\
         if git rev-parse -q --verify HEAD >/dev/null; then\n\
         \x20   git push -q origin \"HEAD:refs/heads/$branch\"\n\
         \x20   echo \"workspace synced: $(git rev-parse --short HEAD)\"\n\
         else\n\
         \x20   echo \"workspace empty, nothing to sync\"\n\
         fi\n"
    )
}

/// The sandbox image check (AGT-2): waits for the sandbox daemon (it starts
/// with its account's user manager, which no unit can order against), then
/// compares the image ID with the one recorded at build time.
fn check_sandbox_script(image: &str, expected: &str) -> String {
    format!(
        "#!/bin/sh\n\
         # AGT-2: the build wrote the sandbox image into the sandbox daemon's own\n\
         # image store (/{DOCKER_ROOT}); nothing is loaded or pulled here. Check\n\
         # that the daemon holds it under the ID recorded at build time.\n\
         set -eu\n\
         want='{expected}'\n\
         tries=0\n\
         until docker version --format '{{{{.Server.Version}}}}' >/dev/null 2>&1; do\n\
         \x20   tries=$((tries + 1))\n\
         \x20   if [ \"$tries\" -ge 600 ]; then\n\
         \x20       echo \"the sandbox daemon ($DOCKER_HOST) did not answer in 10 minutes\" >&2\n\
         \x20       exit 1\n\
         \x20   fi\n\
         \x20   sleep 1\n\
         done\n\
         if ! have=$(docker image inspect --format '{{{{.Id}}}}' '{image}' 2>&1); then\n\
         \x20   echo \"sandbox image {image} is not in the sandbox daemon's store (expected id $want): $have\" >&2\n\
         \x20   exit 1\n\
         fi\n\
         if [ \"$have\" != \"$want\" ]; then\n\
         \x20   echo \"sandbox image {image} has id $have, expected $want\" >&2\n\
         \x20   exit 1\n\
         fi\n\
         echo \"sandbox image {image} present with id $want\"\n"
    )
}

/// The gateway's system unit (SRV-1), sandboxed by systemd as far as
/// OpenClaw tolerates (SRV-7; `docs/security.md` lists every relaxation).
fn gateway_unit(spec: &Spec) -> String {
    let user = &spec.gateway_user().name;
    format!(
        "# SRV-1: the gateway runs as `{user}`, never root, from a system unit that\n\
         # `{user}` cannot change, mask or override.\n\
         [Unit]\n\
         Description=OpenClaw gateway\n\
         Documentation=https://docs.openclaw.ai\n\
         # Secrets arrive at first boot; without them the gateway stays down (SEC-2).\n\
         ConditionPathExists={FIRSTBOOT_DONE}\n\
         Wants=network-online.target openclaw-sandbox-image.service\n\
         After=network-online.target openclaw-firstboot.service openclaw-sandbox-image.service\n\
         StartLimitIntervalSec=300\n\
         StartLimitBurst=5\n\
         \n\
         [Service]\n\
         Type=simple\n\
         User={user}\n\
         Group={user}\n\
         WorkingDirectory=~\n\
         ExecStart=/usr/local/bin/openclaw gateway --port {port}\n\
         Restart=on-failure\n\
         RestartSec=5\n\
         Environment=NODE_ENV=production\n\
         Environment=NODE_COMPILE_CACHE=/home/{user}/.cache/node-compile-cache\n\
         # ESC-1: the sandboxes' rootless daemon, never a root one.\n\
         Environment=DOCKER_HOST={DOCKER_HOST}\n\
         UMask=0077\n\
         # SRV-7: the file system is read-only but for its own home; no other\n\
         # home, no devices, no kernel knobs, no new privileges.\n\
         NoNewPrivileges=yes\n\
         ProtectSystem=strict\n\
         ProtectHome=tmpfs\n\
         BindPaths=/home/{user}\n\
         PrivateTmp=yes\n\
         PrivateDevices=yes\n\
         PrivateUsers=yes\n\
         ProtectKernelTunables=yes\n\
         ProtectKernelModules=yes\n\
         ProtectKernelLogs=yes\n\
         ProtectControlGroups=yes\n\
         ProtectClock=yes\n\
         ProtectHostname=yes\n\
         ProtectProc=invisible\n\
         RestrictNamespaces=yes\n\
         RestrictRealtime=yes\n\
         RestrictSUIDSGID=yes\n\
         LockPersonality=yes\n\
         KeyringMode=private\n\
         RemoveIPC=yes\n\
         DevicePolicy=closed\n\
         SystemCallArchitectures=native\n\
         SystemCallFilter=@system-service\n\
         SystemCallFilter=~@privileged\n\
         SystemCallErrorNumber=EPERM\n\
         CapabilityBoundingSet=\n\
         AmbientCapabilities=\n\
         RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        port = spec.gateway.port,
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command;

    use super::*;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs the sync script with `home` as HOME; returns (success, stdout+stderr).
    fn sync(script: &Path, home: &Path) -> (bool, String) {
        let out = Command::new("bash")
            .arg(script)
            .env_clear()
            .env("HOME", home)
            .env("PATH", std::env::var_os("PATH").unwrap())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// INF-2: the script pushes the workspace to an empty remote, then
    /// rebases onto a commit made elsewhere and pushes again.
    #[test]
    fn workspace_sync_script_pushes_and_rebases() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let bare = dir.path().join("ws.git");
        std::fs::create_dir_all(home.join(".config/openclaw-appliance")).unwrap();
        let out = Command::new("git")
            .args(["init", "-q", "--bare", "-b", "main"])
            .arg(&bare)
            .status()
            .unwrap();
        assert!(out.success());
        std::fs::write(home.join(WORKSPACE_REPO), format!("{}\n", bare.display())).unwrap();
        let script = dir.path().join("workspace-sync");
        std::fs::write(&script, workspace_sync_script()).unwrap();

        // No workspace yet: created, nothing pushed.
        let (ok, text) = sync(&script, &home);
        assert!(ok, "{text}");
        assert!(text.contains("nothing to sync"), "{text}");
        let ws = home.join(AGENT_WORKSPACE);
        assert!(ws.join(".git").is_dir());

        std::fs::write(ws.join("MEMORY.md"), "one\n").unwrap();
        let (ok, text) = sync(&script, &home);
        assert!(ok, "{text}");
        assert_eq!(git(&bare, &["show", "main:MEMORY.md"]), "one\n");
        assert!(
            git(&bare, &["log", "-1", "--format=%an <%ae>", "main"])
                .starts_with("OpenClaw appliance <openclaw@localhost>")
        );

        // A commit made elsewhere, and a local change: rebased, both kept.
        let other = dir.path().join("other");
        let st = Command::new("git")
            .args(["clone", "-q"])
            .arg(&bare)
            .arg(&other)
            .status()
            .unwrap();
        assert!(st.success());
        std::fs::write(other.join("NOTES.md"), "from elsewhere\n").unwrap();
        git(&other, &["add", "NOTES.md"]);
        git(&other, &["commit", "-q", "-m", "elsewhere"]);
        git(&other, &["push", "-q", "origin", "HEAD:main"]);
        std::fs::write(ws.join("MEMORY.md"), "two\n").unwrap();
        let (ok, text) = sync(&script, &home);
        assert!(ok, "{text}");
        assert_eq!(git(&bare, &["show", "main:MEMORY.md"]), "two\n");
        assert_eq!(git(&bare, &["show", "main:NOTES.md"]), "from elsewhere\n");
        assert_eq!(git(&bare, &["rev-list", "--count", "main"]).trim(), "3");

        // An unreachable remote fails the run.
        std::fs::write(
            home.join(WORKSPACE_REPO),
            format!("{}\n", dir.path().join("missing.git").display()),
        )
        .unwrap();
        let (ok, text) = sync(&script, &home);
        assert!(!ok, "{text}");
    }
}
