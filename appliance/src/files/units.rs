//! systemd units: the gateway as a system unit running as its user (SRV-1,
//! SRV-7), the sandbox image check (AGT-2), the order first boot → image →
//! gateway, and the hourly workspace git sync (INF-2), which a sandbox
//! cannot hijack (ESC-2).

use image_spec::Spec;

use super::Context;
use super::sandbox_runtime::{self, DOCKER_HOST, DOCKER_ROOT};
use crate::firstboot;
use crate::tree::Tree;

use crate::firstboot::DONE_MARKER as FIRSTBOOT_DONE;
use crate::firstboot::{KNOWN_HOSTS, SSH_CONFIG, WORKSPACE_HOST_ALIAS, WORKSPACE_REPO};

/// Checks the sandbox image baked into Docker's store (AGT-2).
const CHECK_SANDBOX_SCRIPT: &str = "usr/libexec/openclaw-appliance/check-sandbox-image";
/// The gateway's system unit (SRV-1).
pub const GATEWAY_UNIT: &str = "openclaw-gateway.service";
/// Commits OpenClaw's agent workspace and syncs it with the remote (INF-2).
const WORKSPACE_SYNC_SCRIPT: &str = "usr/libexec/openclaw-appliance/workspace-sync";
/// The system units of the workspace sync (INF-2, ESC-2).
pub const WORKSPACE_SYNC_UNIT: &str = "openclaw-workspace-sync";
/// The sync's own state, relative to home: outside the workspace and so
/// outside every sandbox's mounts (ESC-2).
const SYNC_STATE_DIR: &str = ".local/state/openclaw-appliance";
/// The workspace's git metadata, relative to home (ESC-2).
pub const WORKSPACE_GIT_DIR: &str = ".local/state/openclaw-appliance/workspace.git";
/// OpenClaw's default agent workspace, relative to home (the spec does not
/// set `agents.defaults.workspace`).
const AGENT_WORKSPACE: &str = ".openclaw/workspace";
/// The branch of the remote the workspace is synced with.
const WORKSPACE_BRANCH: &str = "main";

/// tailscaled waits for the network (TS-1). Debian's unit starts it as
/// soon as it can; started before DHCP had configured the interface,
/// tailscaled 1.102.5 took the network for down and never looked for a
/// DERP relay after the address came, so it never reached `Running` and
/// first boot's `tailscale up` timed out (vm-test saw it: `link state:
/// interfaces.State{… ifs={} v4=false …}`, `magicsock: SetNetworkUp(false)`,
/// then `no-derp-home`). A slow DHCP answer on a server is the same race.
const TAILSCALED_NETWORK_DROPIN: &str = "\
# TS-1: tailscaled starts once the network is configured: started before
# DHCP, it can take the network for down and never reach a DERP relay, and
# first boot's login then times out.
[Unit]
Wants=network-online.target
After=network-online.target
";

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
    // UPD-1..4: the state volume on every boot, before what uses the state.
    let volume = firstboot::VOLUME_UNIT;
    tree.file(
        &format!("etc/systemd/system/{volume}"),
        0o644,
        firstboot::volume_unit_text(),
    );
    tree.symlink(
        &format!("etc/systemd/system/multi-user.target.wants/{volume}"),
        &format!("/etc/systemd/system/{volume}"),
    );
    tree.file(
        "etc/systemd/system/tailscaled.service.d/10-openclaw-state-volume.conf",
        0o644,
        firstboot::volume_requires_dropin(),
    );
    tree.file(
        "etc/systemd/system/tailscaled.service.d/20-openclaw-network-online.conf",
        0o644,
        TAILSCALED_NETWORK_DROPIN,
    );
    tree.dir(
        firstboot::VOLUME_MOUNT_POINT.trim_start_matches('/'),
        0o755,
        0,
        0,
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

    // INF-2, ESC-2: the hourly workspace sync, a root-owned system unit
    // running as the gateway user; inert until first boot wrote the remote.
    tree.file(WORKSPACE_SYNC_SCRIPT, 0o755, workspace_sync_script());
    tree.dir(&format!("{home}/.local"), 0o700, uid, gid);
    tree.dir(&format!("{home}/.local/state"), 0o700, uid, gid);
    tree.dir(&format!("{home}/{SYNC_STATE_DIR}"), 0o700, uid, gid);
    let unit = WORKSPACE_SYNC_UNIT;
    tree.file(
        &format!("etc/systemd/system/{unit}.service"),
        0o644,
        workspace_sync_service(spec),
    );
    tree.file(
        &format!("etc/systemd/system/{unit}.timer"),
        0o644,
        workspace_sync_timer(),
    );
    tree.symlink(
        &format!("etc/systemd/system/timers.target.wants/{unit}.timer"),
        &format!("/etc/systemd/system/{unit}.timer"),
    );
}

/// The sync job's oneshot system service (INF-2, ESC-2): root-owned, so
/// neither the gateway user nor a sandbox can edit, mask or override it;
/// it runs as the gateway user with write access to the workspace and the
/// sync's own state directory only.
fn workspace_sync_service(spec: &Spec) -> String {
    let user = spec.gateway_user();
    let home = format!("/home/{}", user.name);
    format!(
        "# INF-2: commits OpenClaw's agent workspace and syncs it with the remote\n\
         # first boot configured (deploy key through the SSH host alias).\n\
         # ESC-2: a system unit, out of reach of `{name}` and of every sandbox;\n\
         # the script pins off everything in git that can run a command.\n\
         [Unit]\n\
         Description=Sync the OpenClaw agent workspace with its git remote\n\
         ConditionPathExists={home}/{WORKSPACE_REPO}\n\
         After=openclaw-firstboot.service network-online.target {volume}\n\
         Wants=network-online.target\n\
         # UPD-1: the workspace and the sync's history live on the state volume when attached.\n\
         Requires={volume}\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         User={name}\n\
         Group={group}\n\
         Environment=HOME={home}\n\
         Environment=PATH=/usr/bin:/bin\n\
         WorkingDirectory=/\n\
         ExecStart=/{WORKSPACE_SYNC_SCRIPT}\n\
         TimeoutStartSec=15min\n\
         Nice=10\n\
         UMask=0077\n\
         ProtectSystem=strict\n\
         ProtectHome=read-only\n\
         ReadWritePaths=-{home}/{AGENT_WORKSPACE} {home}/{SYNC_STATE_DIR}\n\
         PrivateTmp=yes\n\
         PrivateDevices=yes\n\
         PrivateIPC=yes\n\
         PrivateMounts=yes\n\
         PrivateUsers=yes\n\
         ProtectProc=invisible\n\
         ProcSubset=pid\n\
         ProtectKernelTunables=yes\n\
         ProtectKernelModules=yes\n\
         ProtectKernelLogs=yes\n\
         ProtectControlGroups=yes\n\
         ProtectClock=yes\n\
         ProtectHostname=yes\n\
         NoNewPrivileges=yes\n\
         CapabilityBoundingSet=\n\
         AmbientCapabilities=\n\
         RestrictNamespaces=yes\n\
         RestrictSUIDSGID=yes\n\
         RestrictRealtime=yes\n\
         LockPersonality=yes\n\
         MemoryDenyWriteExecute=yes\n\
         RemoveIPC=yes\n\
         SystemCallArchitectures=native\n\
         SystemCallFilter=@system-service\n\
         SystemCallFilter=~@privileged\n\
         SystemCallErrorNumber=EPERM\n\
         RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n",
        name = user.name,
        group = user.name,
        volume = firstboot::VOLUME_UNIT,
    )
}

/// The hourly, persistent timer of the sync job (INF-2).
fn workspace_sync_timer() -> String {
    format!(
        "# INF-2: hourly; a run missed while the machine was off happens at boot.\n\
         # No condition here: the timer starts at boot, before first boot may have\n\
         # written the remote; the service skips its runs until it has.\n\
         [Unit]\n\
         Description=Hourly sync of the OpenClaw agent workspace\n\
         After={firstboot}\n\
         \n\
         [Timer]\n\
         OnCalendar=hourly\n\
         Persistent=true\n\
         RandomizedDelaySec=5min\n\
         \n\
         [Install]\n\
         WantedBy=timers.target\n",
        firstboot = "openclaw-firstboot.service",
    )
}

/// The sync script (INF-2, ESC-2): runs as the gateway user. The remote is
/// the host-alias URL first boot wrote; the deploy key is chosen by the SSH
/// config, never named here, and nothing secret is printed.
///
/// The workspace is written by sandboxes, so nothing in it is trusted:
/// git's metadata lives in [`WORKSPACE_GIT_DIR`], named by `GIT_DIR` and
/// `GIT_WORK_TREE` (a `.git` in the workspace is never discovered, and git
/// never adds a path named `.git`); git reads no system or global config;
/// every setting that can make git run a command is pinned on its command
/// line or in its environment, which outrank any config file; the commit
/// is made with plumbing (`write-tree`, `commit-tree`), which runs no hook
/// and no status over nested repositories; the script never changes into
/// the workspace and sources nothing.
fn workspace_sync_script() -> String {
    format!(
        r#"#!/bin/bash
# INF-2: commit OpenClaw's agent workspace and sync it with the remote
# in ~/{WORKSPACE_REPO} (written by first boot).
# ESC-2: sandboxes write the workspace; nothing in it is executed or read as
# configuration. Git's metadata is in ~/{WORKSPACE_GIT_DIR}.
set -euo pipefail
umask 077
cd /
# Only what this script sets reaches git and ssh.
for v in $(compgen -e); do
    case $v in GIT_*|SSH_*|BASH_ENV|ENV|DISPLAY) unset "$v" ;; esac
done
remote=$(head -n 1 "$HOME/{WORKSPACE_REPO}")
if [ -z "$remote" ]; then
    echo "~/{WORKSPACE_REPO} is empty" >&2
    exit 1
fi
workspace="$HOME/{AGENT_WORKSPACE}"
known_hosts="$HOME/{KNOWN_HOSTS}"
branch={WORKSPACE_BRANCH}
if [ ! -d "$workspace" ]; then
    echo "no workspace yet ($workspace), nothing to sync"
    exit 0
fi
export GIT_DIR="$HOME/{WORKSPACE_GIT_DIR}" GIT_WORK_TREE="$workspace"
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
export GIT_ALLOW_PROTOCOL=ssh GIT_TERMINAL_PROMPT=0 GIT_ASKPASS= GIT_SSH_VARIANT=ssh
export GIT_PAGER=cat GIT_EDITOR=: GIT_SEQUENCE_EDITOR=:
export GIT_AUTHOR_NAME='OpenClaw appliance' GIT_AUTHOR_EMAIL='openclaw@localhost'
export GIT_COMMITTER_NAME="$GIT_AUTHOR_NAME" GIT_COMMITTER_EMAIL="$GIT_AUTHOR_EMAIL"
# The one ssh invocation: the appliance's SSH config (host alias, deploy
# key), the host key pinned by first boot, no prompts, no proxy or local
# command. Command-line options outrank the config file.
printf -v ssh_config %q "$HOME/{SSH_CONFIG}"
printf -v pinned_hosts %q "$known_hosts"
export GIT_SSH_COMMAND="ssh -F $ssh_config -o BatchMode=yes -o StrictHostKeyChecking=yes \
-o UserKnownHostsFile=$pinned_hosts -o GlobalKnownHostsFile=/dev/null \
-o HostKeyAlias={WORKSPACE_HOST_ALIAS} -o ProxyCommand=none -o PermitLocalCommand=no \
-o ControlMaster=no -o ControlPath=none"
git() {{
    command git \
        -c core.hooksPath=/dev/null \
        -c core.fsmonitor=false \
        -c core.untrackedCache=false \
        -c core.sshCommand="$GIT_SSH_COMMAND" \
        -c core.askPass= \
        -c core.pager=cat \
        -c core.editor=: \
        -c credential.helper= \
        -c protocol.allow=never \
        -c protocol.ssh.allow=always \
        -c submodule.recurse=false \
        -c fetch.recurseSubmodules=false \
        -c push.recurseSubmodules=no \
        -c diff.ignoreSubmodules=all \
        -c commit.gpgSign=false \
        -c gc.auto=0 \
        -c maintenance.auto=false \
        "$@"
}}
# Commits the index on top of HEAD unless it holds HEAD's tree (or, on a
# new branch, nothing); plumbing only: no hook, no status.
commit_index() {{
    local tree parent
    tree=$(git write-tree)
    parent=$(git rev-parse -q --verify 'HEAD^{{commit}}' || true)
    if [ -n "$parent" ]; then
        [ "$tree" != "$(git rev-parse "$parent^{{tree}}")" ] || return 0
    else
        [ "$tree" != "$(git hash-object -t tree /dev/null)" ] || return 0
    fi
    local commit
    commit=$(git commit-tree "$tree" ${{parent:+-p "$parent"}} \
        -m "workspace sync $(date -u +%Y-%m-%dT%H:%M:%SZ)")
    git update-ref -m "workspace sync" HEAD "$commit" "$parent"
}}
if [ ! -d "$GIT_DIR" ]; then
    mkdir -p "$GIT_DIR"
    git init -q --template= -b "$branch"
fi
if git remote get-url origin >/dev/null 2>&1; then
    git remote set-url origin "$remote"
else
    git remote add origin "$remote"
fi
git add -A
commit_index
if [ ! -s "$known_hosts" ]; then
    echo "workspace committed locally, not synced: no pinned host key for the remote" \
        "(~/{KNOWN_HOSTS} is missing or empty); set \`workspace-repo-host-key\`" \
        "in user-data (docs/first-boot.md)" >&2
    exit 1
fi
# 0: the remote has the branch; 2: it does not yet (first push).
found=0
git ls-remote --exit-code --heads origin "$branch" >/dev/null || found=$?
case $found in
    0)
        git fetch -q --no-recurse-submodules origin "$branch"
        if ! git rev-parse -q --verify HEAD >/dev/null; then
            # Nothing committed here yet: the workspace takes the remote's.
            git reset -q --hard FETCH_HEAD
        elif ! git merge-base HEAD FETCH_HEAD >/dev/null; then
            # A new git dir and a remote with history (the first sync after
            # the git dir moved out of the workspace, or lost state): the
            # workspace as it is, as one commit on top of the remote's.
            git reset -q --soft FETCH_HEAD
            commit_index
        elif ! git rebase -q FETCH_HEAD; then
            git rebase --abort || true
            echo "cannot rebase the workspace onto the remote's $branch" >&2
            exit 1
        fi
        ;;
    2) ;;
    *) echo "cannot reach the workspace remote (git ls-remote: $found)" >&2; exit 1 ;;
esac
if git rev-parse -q --verify HEAD >/dev/null; then
    git push -q --recurse-submodules=no origin "HEAD:refs/heads/$branch"
    echo "workspace synced: $(git rev-parse --short HEAD)"
else
    echo "workspace empty, nothing to sync"
fi
"#
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
         # UPD-1: its state directory lives on the state volume when one is attached.\n\
         Requires={volume}\n\
         After=network-online.target openclaw-firstboot.service openclaw-sandbox-image.service {volume}\n\
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
         # Not RestrictSUIDSGID: OpenClaw's startup state migrations fail under it\n\
         # (\"Failed migrating legacy shared auth store\", docs/security.md);\n\
         # NoNewPrivileges makes set-id bits inert for all it runs anyway.\n\
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
        volume = firstboot::VOLUME_UNIT,
    )
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};
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

    fn write_exec(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// A home with the files first boot writes, a bare remote named through
    /// the host alias, and an `ssh` stand-in on PATH that logs its argv and
    /// runs the remote command locally (as sshd would), so the product's
    /// ssh-only protocol pin holds in tests too.
    struct Fixture {
        dir: tempfile::TempDir,
        script: PathBuf,
    }

    impl Fixture {
        fn new(script_text: &str) -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let f = Fixture {
                script: dir.path().join("workspace-sync"),
                dir,
            };
            std::fs::create_dir_all(f.home().join(".config/openclaw-appliance")).unwrap();
            std::fs::create_dir_all(f.home().join(".ssh")).unwrap();
            std::fs::write(f.home().join(SSH_CONFIG), "").unwrap();
            std::fs::write(
                f.home().join(KNOWN_HOSTS),
                format!("{WORKSPACE_HOST_ALIAS} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFAKE\n"),
            )
            .unwrap();
            let st = Command::new("git")
                .args(["init", "-q", "--bare", "-b", "main"])
                .arg(f.bare())
                .status()
                .unwrap();
            assert!(st.success());
            f.set_remote(&f.bare());
            write_exec(
                &f.path("bin/ssh"),
                &format!(
                    "#!/bin/sh\nprintf '%s\\n' \"$*\" >> {log}\nfor last; do :; done\n\
                     unset GIT_DIR GIT_WORK_TREE\nexec sh -c \"$last\"\n",
                    log = f.path("ssh.log").display()
                ),
            );
            std::fs::write(&f.script, script_text).unwrap();
            f
        }
        fn path(&self, rel: &str) -> PathBuf {
            self.dir.path().join(rel)
        }
        fn home(&self) -> PathBuf {
            self.path("home")
        }
        fn ws(&self) -> PathBuf {
            self.home().join(AGENT_WORKSPACE)
        }
        fn bare(&self) -> PathBuf {
            self.path("ws.git")
        }
        fn set_remote(&self, bare: &Path) {
            std::fs::write(
                self.home().join(WORKSPACE_REPO),
                format!("{WORKSPACE_HOST_ALIAS}:{}\n", bare.display()),
            )
            .unwrap();
        }
        fn ssh_log(&self) -> String {
            std::fs::read_to_string(self.path("ssh.log")).unwrap_or_default()
        }
        /// Runs the sync script; returns (success, stdout+stderr).
        fn sync(&self) -> (bool, String) {
            let path = format!(
                "{}:{}",
                self.path("bin").display(),
                std::env::var("PATH").unwrap()
            );
            let out = Command::new("bash")
                .arg(&self.script)
                .env_clear()
                .env("HOME", self.home())
                .env("PATH", path)
                .output()
                .unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            (out.status.success(), text)
        }
        /// A commit pushed to the remote from another clone.
        fn commit_elsewhere(&self, file: &str, text: &str) {
            let other = self.path("other");
            if !other.exists() {
                let st = Command::new("git")
                    .args(["clone", "-q"])
                    .arg(self.bare())
                    .arg(&other)
                    .status()
                    .unwrap();
                assert!(st.success());
            } else {
                git(&other, &["pull", "-q", "origin", "main"]);
            }
            std::fs::write(other.join(file), text).unwrap();
            git(&other, &["add", file]);
            git(&other, &["commit", "-q", "-m", "elsewhere"]);
            git(&other, &["push", "-q", "origin", "HEAD:main"]);
        }
    }

    /// INF-2: the script pushes the workspace to an empty remote, then
    /// rebases onto a commit made elsewhere and pushes again; its git
    /// metadata stays outside the workspace (ESC-2).
    #[test]
    fn workspace_sync_script_pushes_and_rebases() {
        let f = Fixture::new(&workspace_sync_script());
        let gitdir = f.home().join(WORKSPACE_GIT_DIR);

        // No workspace yet: nothing created, nothing pushed.
        let (ok, text) = f.sync();
        assert!(ok, "{text}");
        assert!(text.contains("nothing to sync"), "{text}");
        assert!(!f.ws().exists() && !gitdir.exists());

        std::fs::create_dir_all(f.ws()).unwrap();
        let (ok, text) = f.sync();
        assert!(ok, "{text}");
        assert!(text.contains("nothing to sync"), "{text}");
        assert!(gitdir.join("HEAD").is_file());
        assert!(!f.ws().join(".git").exists());

        std::fs::write(f.ws().join("MEMORY.md"), "one\n").unwrap();
        let (ok, text) = f.sync();
        assert!(ok, "{text}");
        assert_eq!(git(&f.bare(), &["show", "main:MEMORY.md"]), "one\n");
        assert!(
            git(&f.bare(), &["log", "-1", "--format=%an <%ae>", "main"])
                .starts_with("OpenClaw appliance <openclaw@localhost>")
        );
        assert!(!f.ws().join(".git").exists());

        // A commit made elsewhere, and a local change: rebased, both kept.
        f.commit_elsewhere("NOTES.md", "from elsewhere\n");
        std::fs::write(f.ws().join("MEMORY.md"), "two\n").unwrap();
        let (ok, text) = f.sync();
        assert!(ok, "{text}");
        assert_eq!(git(&f.bare(), &["show", "main:MEMORY.md"]), "two\n");
        assert_eq!(
            git(&f.bare(), &["show", "main:NOTES.md"]),
            "from elsewhere\n"
        );
        assert_eq!(git(&f.bare(), &["rev-list", "--count", "main"]).trim(), "3");
        assert_eq!(
            std::fs::read_to_string(f.ws().join("NOTES.md")).unwrap(),
            "from elsewhere\n"
        );

        // Every ssh run was the pinned one.
        let log = f.ssh_log();
        assert!(!log.is_empty());
        let kh = f.home().join(KNOWN_HOSTS);
        for line in log.lines() {
            for want in [
                "-o BatchMode=yes".to_string(),
                "-o StrictHostKeyChecking=yes".to_string(),
                format!("-o UserKnownHostsFile={}", kh.display()),
                "-o GlobalKnownHostsFile=/dev/null".to_string(),
                format!("-F {}", f.home().join(SSH_CONFIG).display()),
            ] {
                assert!(line.contains(&want), "{want} missing in ssh argv: {line}");
            }
        }

        // Without a pinned host key the workspace is committed, never sent.
        std::fs::remove_file(&kh).unwrap();
        std::fs::write(f.ws().join("MEMORY.md"), "three\n").unwrap();
        let before = f.ssh_log().lines().count();
        let (ok, text) = f.sync();
        assert!(!ok, "{text}");
        assert!(text.contains("`workspace-repo-host-key`"), "{text}");
        assert_eq!(f.ssh_log().lines().count(), before);
        let local = Command::new("git")
            .arg("--git-dir")
            .arg(&gitdir)
            .args(["show", "main:MEMORY.md"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&local.stdout), "three\n");

        // An unreachable remote fails the run.
        std::fs::write(&kh, "x\n").unwrap();
        f.set_remote(&f.path("missing.git"));
        let (ok, text) = f.sync();
        assert!(!ok, "{text}");
    }

    /// A new git dir against a remote with history (the first sync after
    /// the git dir left the workspace): the workspace becomes one commit on
    /// top of the remote's; an empty workspace takes the remote's files.
    #[test]
    fn workspace_sync_script_adopts_the_remote_history() {
        let f = Fixture::new(&workspace_sync_script());
        f.commit_elsewhere("MEMORY.md", "old\n");
        std::fs::create_dir_all(f.ws()).unwrap();
        std::fs::write(f.ws().join("MEMORY.md"), "new\n").unwrap();
        let (ok, text) = f.sync();
        assert!(ok, "{text}");
        assert_eq!(git(&f.bare(), &["show", "main:MEMORY.md"]), "new\n");
        assert_eq!(git(&f.bare(), &["rev-list", "--count", "main"]).trim(), "2");

        let g = Fixture::new(&workspace_sync_script());
        g.commit_elsewhere("NOTES.md", "kept\n");
        std::fs::create_dir_all(g.ws()).unwrap();
        let (ok, text) = g.sync();
        assert!(ok, "{text}");
        assert_eq!(
            std::fs::read_to_string(g.ws().join("NOTES.md")).unwrap(),
            "kept\n"
        );
    }

    /// Plants, in the workspace, everything ESC-2 names: a `.git` (as a
    /// directory, and as a file pointing into the workspace) with hooks and
    /// a config setting `core.hooksPath`, `core.fsmonitor`,
    /// `core.sshCommand`, aliases, a filter, diff and merge driver, a
    /// credential helper and an `ext::` remote; a `.gitattributes` naming
    /// the filter; a nested repository with the same; a `.gitmodules`;
    /// `.npmrc` and shell rc files. Each would write a marker outside the
    /// workspace. Returns the marker directory.
    fn plant(f: &Fixture, git_as_file: bool) -> PathBuf {
        let markers = f.path("markers");
        std::fs::create_dir_all(&markers).unwrap();
        let touch = |name: &str| format!("touch {}/{name}", markers.display());
        let ws = f.ws();
        let evil = |gitdir: &Path, tag: &str| {
            let hooks = gitdir.join("hooks");
            for hook in [
                "pre-commit",
                "prepare-commit-msg",
                "commit-msg",
                "post-commit",
                "pre-push",
                "reference-transaction",
                "post-checkout",
                "post-rewrite",
                "pre-rebase",
                "post-merge",
                "post-index-change",
                "pre-auto-gc",
                "fsmonitor-watchman",
            ] {
                write_exec(
                    &hooks.join(hook),
                    &format!("#!/bin/sh\n{}\n", touch(&format!("{tag}-hook-{hook}"))),
                );
            }
            let fsmonitor = f.path(&format!("evil-{tag}-fsmonitor"));
            write_exec(
                &fsmonitor,
                &format!("#!/bin/sh\n{}\n", touch(&format!("{tag}-fsmonitor"))),
            );
            let t = |n: &str| touch(&format!("{tag}-{n}"));
            std::fs::create_dir_all(gitdir.join("refs/heads")).unwrap();
            std::fs::create_dir_all(gitdir.join("objects")).unwrap();
            std::fs::write(gitdir.join("HEAD"), "ref: refs/heads/main\n").unwrap();
            std::fs::write(
                gitdir.join("config"),
                format!(
                    "[core]\n\trepositoryformatversion = 0\n\tbare = false\n\
                     \thooksPath = {hooks}\n\tfsmonitor = {fsmonitor}\n\
                     \tsshCommand = \"{ssh}; ssh\"\n\tpager = \"{pager}; cat\"\n\
                     \teditor = \"{editor}; true\"\n\taskPass = \"{askpass}\"\n\
                     [alias]\n\tadd = \"!{a}\"\n\tcommit = \"!{a}\"\n\tpush = \"!{a}\"\n\
                     \tfetch = \"!{a}\"\n\trebase = \"!{a}\"\n\tstatus = \"!{a}\"\n\
                     [filter \"evil\"]\n\tclean = \"{clean}; cat\"\n\tsmudge = \"{smudge}; cat\"\n\
                     [diff \"evil\"]\n\ttextconv = \"{textconv}; cat\"\n\tcommand = \"{diff}\"\n\
                     [merge \"evil\"]\n\tdriver = \"{merge}\"\n\
                     [credential]\n\thelper = \"!{cred}\"\n\
                     [protocol]\n\tallow = always\n\
                     [remote \"origin\"]\n\turl = \"ext::sh -c {ext}\"\n\
                     [submodule]\n\trecurse = true\n",
                    hooks = hooks.display(),
                    fsmonitor = fsmonitor.display(),
                    ssh = t("sshcommand"),
                    pager = t("pager"),
                    editor = t("editor"),
                    askpass = t("askpass"),
                    a = t("alias"),
                    clean = t("filter-clean"),
                    smudge = t("filter-smudge"),
                    textconv = t("textconv"),
                    diff = t("diff"),
                    merge = t("merge"),
                    cred = t("credential"),
                    ext = t("ext").replace(' ', "% "),
                ),
            )
            .unwrap();
        };
        let _ = std::fs::remove_dir_all(ws.join(".git"));
        let _ = std::fs::remove_file(ws.join(".git"));
        if git_as_file {
            evil(&ws.join("planted.git"), "gitfile");
            std::fs::write(
                ws.join(".git"),
                format!("gitdir: {}\n", ws.join("planted.git").display()),
            )
            .unwrap();
        } else {
            evil(&ws.join(".git"), "gitdir");
        }
        std::fs::write(
            ws.join(".gitattributes"),
            "* filter=evil diff=evil merge=evil\n",
        )
        .unwrap();
        std::fs::write(ws.join("filtered.txt"), "plain\n").unwrap();
        std::fs::write(
            ws.join(".gitmodules"),
            format!(
                "[submodule \"sub\"]\n\tpath = sub\n\turl = \"ext::sh -c {}\"\n\
                 \tfetchRecurseSubmodules = true\n\tignore = none\n",
                touch("gitmodules-url").replace(' ', "% ")
            ),
        )
        .unwrap();
        // A nested repository with a commit, then the same plants.
        let sub = ws.join("sub");
        if !sub.join(".git").exists() {
            std::fs::create_dir_all(&sub).unwrap();
            git(&sub, &["init", "-q", "-b", "main"]);
            std::fs::write(sub.join("inner.txt"), "inner\n").unwrap();
            git(&sub, &["add", "inner.txt"]);
            git(&sub, &["commit", "-q", "-m", "inner"]);
            evil(&sub.join(".git"), "nested");
            std::fs::write(sub.join(".gitattributes"), "* filter=evil\n").unwrap();
        }
        std::fs::write(
            sub.join("inner.txt"),
            format!("dirty {}\n", markers.display()),
        )
        .unwrap();
        std::fs::write(
            ws.join(".npmrc"),
            format!("script-shell={}\n", f.path("evil-npm").display()),
        )
        .unwrap();
        write_exec(
            &f.path("evil-npm"),
            &format!("#!/bin/sh\n{}\n", touch("npmrc")),
        );
        for rc in [
            ".bashrc",
            ".profile",
            ".bash_profile",
            ".bash_login",
            ".bash_logout",
        ] {
            std::fs::write(ws.join(rc), format!("{}\n", touch(&format!("rc{rc}")))).unwrap();
        }
        markers
    }

    fn markers_in(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// Runs `script` over a planted workspace: a first push, a rebase onto
    /// a commit made elsewhere, then `.git` as a file. Returns the markers.
    fn planted_sync(script: &str) -> (Fixture, Vec<String>) {
        let f = Fixture::new(script);
        std::fs::create_dir_all(f.ws()).unwrap();
        std::fs::write(f.ws().join("MEMORY.md"), "one\n").unwrap();
        let markers = plant(&f, false);
        let (ok1, t1) = f.sync();
        f.commit_elsewhere("NOTES.md", "from elsewhere\n");
        std::fs::write(f.ws().join("MEMORY.md"), "two\n").unwrap();
        let (ok2, t2) = f.sync();
        plant(&f, true);
        std::fs::write(f.ws().join("MEMORY.md"), "three\n").unwrap();
        let (ok3, t3) = f.sync();
        let found = markers_in(&markers);
        if found.is_empty() {
            assert!(ok1 && ok2 && ok3, "{t1}\n---\n{t2}\n---\n{t3}");
        }
        (f, found)
    }

    /// ESC-2: nothing planted in the workspace runs, and the sync still
    /// pushes; `.gitattributes` names a filter no config defines, so the
    /// file is committed as it is.
    #[test]
    fn workspace_sync_script_runs_nothing_planted_in_the_workspace() {
        let (f, found) = planted_sync(&workspace_sync_script());
        assert!(found.is_empty(), "planted code ran on the host: {found:?}");
        assert_eq!(git(&f.bare(), &["show", "main:MEMORY.md"]), "three\n");
        assert_eq!(
            git(&f.bare(), &["show", "main:NOTES.md"]),
            "from elsewhere\n"
        );
        assert_eq!(git(&f.bare(), &["show", "main:filtered.txt"]), "plain\n");
        assert!(git(&f.bare(), &["ls-tree", "-r", "--name-only", "main"]).contains(".npmrc"));
        let log = f.ssh_log();
        assert!(!log.is_empty());
        assert!(
            log.lines()
                .all(|l| l.contains("-o StrictHostKeyChecking=yes")),
            "{log}"
        );
    }
}
