//! The container runtime of OpenClaw's sandboxes: rootless Docker, run by
//! an account of its own (ESC-1, ESC-3, ESC-5).
//!
//! The daemon (`dockerd` inside RootlessKit, with slirp4netns as its
//! network) runs as [`USER`] from a user unit that only `root` can write
//! (`/etc/systemd/user`, `ConditionUser=`), under that account's lingering
//! user manager. Its socket is in [`SOCKET_DIR`], reachable by the gateway
//! user's group only; the gateway finds it through [`DOCKER_HOST`]. Docker's
//! own system units (the root daemon) are masked: no root-owned container
//! daemon runs at all.
//!
//! # IDs
//! In the daemon's user namespace uid 0 is [`USER`] itself; the other IDs
//! come from `/etc/subuid` and `/etc/subgid` in file order ([`id_ranges`]),
//! laid out so that the sandbox image's user (uid and gid
//! [`SANDBOX_IMAGE_ID`], `node`) *is* the gateway user on the host. Files a
//! sandbox writes in `/workspace` therefore belong to the gateway user, who
//! (and whose workspace sync) can read and write them; every other container
//! ID is an unprivileged subordinate ID nobody else owns. The build writes
//! the sandbox image into the daemon's store through the same map.
//!
//! # Limits
//! The daemon uses systemd's cgroup driver, so each container is a scope of
//! [`USER`]'s user manager; `user@<uid>.service` gets the cpu, io, memory and
//! pids controllers delegated and a ceiling for everything the sandboxes run
//! together ([`TASKS_MAX`], [`MEMORY_MAX`], [`CPU_QUOTA`]), below the limits
//! OpenClaw sets on each container.
//!
//! # Network
//! Container traffic leaves the daemon's namespace through slirp4netns, a
//! process of [`USER`] on the host, so per-uid `OUTPUT` rules
//! (`firstboot::netfilter`) keep it away from the metadata service, the
//! tailnet and private ranges (SEC-5, LAT-1); `--disable-host-loopback`
//! keeps it off the host's loopback (AGT-6); a `-p` publish is an ordinary
//! listening socket of [`USER`], closed from outside by UFW (ESC-5).

use image_spec::Spec;

use crate::tree::Tree;

/// The account that runs the sandboxes' rootless Docker daemon.
pub const USER: &str = "sandboxd";
/// Its uid and gid: fixed, and far below the range Debian hands out to
/// system accounts dynamically (downwards from 999).
pub const UID: u32 = 900;
/// Its home, which holds Docker's data root.
pub const HOME: &str = "var/lib/sandboxd";
/// Docker's data root, where the build writes the sandbox image into the
/// daemon's own image store (AGT-2): no archive, no `docker load`.
pub const DOCKER_ROOT: &str = "var/lib/sandboxd/docker";
/// The directory of the daemon's socket: `sandboxd`'s, group of the gateway
/// user, 0750.
pub const SOCKET_DIR: &str = "run/openclaw-sandbox";
/// How clients (the gateway, the sandbox image check, vm-test) reach the
/// daemon.
pub const DOCKER_HOST: &str = "unix:///run/openclaw-sandbox/docker.sock";
/// The daemon's configuration file (root-owned; the daemon cannot change it).
pub const DAEMON_CONFIG: &str = "etc/openclaw-appliance/sandbox-dockerd.json";
/// The user unit that runs the daemon.
pub const UNIT: &str = "openclaw-sandbox-dockerd.service";
/// RootlessKit's launcher of `dockerd`, shipped by Debian's `docker.io`.
const ROOTLESS_SH: &str = "/usr/share/docker.io/contrib/dockerd-rootless.sh";
/// The uid and gid of the sandbox image's user (`node`, AGT-3).
pub const SANDBOX_IMAGE_ID: u32 = 1000;
/// How many IDs the daemon's namespace has besides its own (0).
const SUBORDINATE_IDS: u32 = 65536;
/// The first host ID of the subordinate ranges (nothing else uses them).
const SUBORDINATE_BASE: u32 = 200_000;
/// Ceiling on the tasks of everything the sandboxes run together.
pub const TASKS_MAX: u32 = 2048;
/// Ceiling on their memory together (systemd syntax).
pub const MEMORY_MAX: &str = "75%";
/// Ceiling on their CPU together (systemd syntax): 1.5 of the host's CPUs.
pub const CPU_QUOTA: &str = "150%";
/// The system units of the root daemon, masked.
const ROOTFUL_UNITS: [&str; 3] = ["docker.service", "docker.socket", "containerd.service"];

/// One range of the daemon's user namespace: `inside..inside+count` in the
/// namespace is `outside..outside+count` on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    /// First ID in the namespace.
    pub inside: u32,
    /// First ID on the host.
    pub outside: u32,
    /// Length.
    pub count: u32,
}

/// The daemon's whole ID map, the same for uids and gids: 0 → [`UID`],
/// then the subordinate ranges in `/etc/subuid` order, with
/// [`SANDBOX_IMAGE_ID`] → `host_id` (the gateway user's uid, or gid).
pub fn id_ranges(host_id: u32) -> Vec<IdRange> {
    let below = SANDBOX_IMAGE_ID - 1;
    let above = SUBORDINATE_IDS - SANDBOX_IMAGE_ID;
    vec![
        IdRange {
            inside: 0,
            outside: UID,
            count: 1,
        },
        IdRange {
            inside: 1,
            outside: SUBORDINATE_BASE,
            count: below,
        },
        IdRange {
            inside: SANDBOX_IMAGE_ID,
            outside: host_id,
            count: 1,
        },
        IdRange {
            inside: SANDBOX_IMAGE_ID + 1,
            outside: SUBORDINATE_BASE + SANDBOX_IMAGE_ID,
            count: above,
        },
    ]
}

/// `/etc/subuid` or `/etc/subgid` for `host_id`: only [`USER`] has
/// subordinate IDs (the gateway user has none, so it cannot make a user
/// namespace with anyone else's IDs through `newuidmap`).
fn subid_file(host_id: u32) -> String {
    let mut text = String::new();
    for r in id_ranges(host_id).iter().skip(1) {
        text.push_str(&format!("{USER}:{}:{}\n", r.outside, r.count));
    }
    text
}

pub(super) fn render(tree: &mut Tree, spec: &Spec) {
    let user = spec.gateway_user();
    tree.file("etc/subuid", 0o644, subid_file(user.uid));
    tree.file("etc/subgid", 0o644, subid_file(user.gid));
    tree.dir(HOME, 0o700, UID, UID);
    tree.file(DAEMON_CONFIG, 0o644, daemon_config(&user.name));
    tree.file(
        "etc/tmpfiles.d/openclaw-sandbox.conf",
        0o644,
        format!(
            "# ESC-1: the rootless sandbox daemon's socket directory: {USER}'s,\n\
             # reachable by the gateway user's group only.\n\
             d /{SOCKET_DIR} 0750 {USER} {group} -\n",
            group = user.name
        ),
    );
    for unit in ROOTFUL_UNITS {
        tree.symlink(&format!("etc/systemd/system/{unit}"), "/dev/null");
    }
    tree.file(&format!("var/lib/systemd/linger/{USER}"), 0o644, "");
    tree.file(
        &format!("etc/systemd/system/user@{UID}.service.d/10-openclaw-sandbox.conf"),
        0o644,
        user_manager_dropin(),
    );
    tree.file(&format!("etc/systemd/user/{UNIT}"), 0o644, daemon_unit());
    tree.symlink(
        &format!("etc/systemd/user/default.target.wants/{UNIT}"),
        &format!("/etc/systemd/user/{UNIT}"),
    );
}

/// `dockerd`'s configuration. `group` owns the socket (the gateway user's
/// group, mapped into the daemon's namespace by [`id_ranges`]).
fn daemon_config(group: &str) -> String {
    let config = serde_json::json!({
        "hosts": [DOCKER_HOST],
        "group": group,
        "data-root": format!("/{DOCKER_ROOT}"),
        "storage-driver": "overlay2",
        "exec-opts": ["native.cgroupdriver=systemd"],
        "log-driver": "json-file",
        "log-opts": {"max-size": "10m", "max-file": "3"},
        "live-restore": false,
    });
    let mut text = serde_json::to_string_pretty(&config).unwrap_or_default();
    text.push('\n');
    text
}

/// The drop-in for the sandbox account's user manager: after the firewall
/// that keeps container traffic in (SEC-5, LAT-1), with the controllers the
/// daemon's per-container limits need, and a ceiling for all of it (ESC-3).
fn user_manager_dropin() -> String {
    format!(
        "# ESC-3: containers are scopes of this manager; cpu, io, memory and pids\n\
         # are delegated so Docker can limit each one, and everything the\n\
         # sandboxes run together stays under these ceilings.\n\
         # SEC-5, LAT-1: no container traffic before the per-uid firewall rules.\n\
         [Unit]\n\
         Requires={fw}\n\
         After={fw}\n\
         \n\
         [Service]\n\
         Delegate=cpu cpuset io memory pids\n\
         TasksMax={TASKS_MAX}\n\
         MemoryMax={MEMORY_MAX}\n\
         MemorySwapMax=0\n\
         CPUQuota={CPU_QUOTA}\n",
        fw = crate::firstboot::METADATA_FIREWALL_UNIT,
    )
}

/// The daemon's user unit: only [`USER`]'s manager runs it.
fn daemon_unit() -> String {
    format!(
        "# ESC-1: OpenClaw's sandboxes run on a rootless Docker daemon: uid 0 in\n\
         # its containers is `{USER}` on the host, never root.\n\
         [Unit]\n\
         Description=Rootless Docker for OpenClaw's sandboxes\n\
         ConditionUser={USER}\n\
         StartLimitIntervalSec=120\n\
         StartLimitBurst=3\n\
         \n\
         [Service]\n\
         Type=notify\n\
         NotifyAccess=all\n\
         Environment=PATH=/usr/sbin:/usr/bin:/sbin:/bin\n\
         Environment=DOCKERD_ROOTLESS_ROOTLESSKIT_NET=slirp4netns\n\
         Environment=DOCKERD_ROOTLESS_ROOTLESSKIT_MTU=65520\n\
         Environment=DOCKERD_ROOTLESS_ROOTLESSKIT_PORT_DRIVER=builtin\n\
         Environment=DOCKERD_ROOTLESS_ROOTLESSKIT_DISABLE_HOST_LOOPBACK=true\n\
         ExecStart={ROOTLESS_SH} --config-file=/{DAEMON_CONFIG}\n\
         ExecReload=/bin/kill -s HUP $MAINPID\n\
         TimeoutStartSec=10min\n\
         Restart=always\n\
         RestartSec=2\n\
         LimitNOFILE=infinity\n\
         Delegate=yes\n\
         KillMode=mixed\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_firewall_names_this_uid() {
        assert_eq!(crate::firstboot::SANDBOX_UID, UID.to_string());
    }

    #[test]
    fn the_image_user_is_the_gateway_user_and_ranges_do_not_overlap() {
        let ranges = id_ranges(1000);
        let map = |id: u32| {
            ranges
                .iter()
                .find(|r| id >= r.inside && id - r.inside < r.count)
                .map(|r| r.outside + (id - r.inside))
        };
        assert_eq!(map(0), Some(UID));
        assert_eq!(map(SANDBOX_IMAGE_ID), Some(1000));
        assert_eq!(map(1), Some(SUBORDINATE_BASE));
        assert_eq!(
            map(SUBORDINATE_IDS),
            Some(SUBORDINATE_BASE + SUBORDINATE_IDS - 1)
        );
        assert_eq!(map(SUBORDINATE_IDS + 1), None);
        // Contiguous inside, disjoint outside.
        let mut next = 0;
        for r in &ranges {
            assert_eq!(r.inside, next);
            next += r.count;
        }
        for (i, a) in ranges.iter().enumerate() {
            for b in &ranges[i + 1..] {
                assert!(
                    a.outside + a.count <= b.outside || b.outside + b.count <= a.outside,
                    "{a:?} overlaps {b:?}"
                );
            }
        }
        assert_eq!(
            subid_file(1000),
            "sandboxd:200000:999\nsandboxd:1000:1\nsandboxd:201000:64536\n"
        );
    }
}
