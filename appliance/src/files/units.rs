//! systemd units: the gateway as a user unit (SRV-1, SRV-7), the sandbox
//! image load (AGT-2), linger, and the order first boot → image → gateway.

use image_spec::Spec;

use super::{Context, SANDBOX_ARCHIVE};
use crate::firstboot;
use crate::tree::Tree;

use crate::firstboot::DONE_MARKER as FIRSTBOOT_DONE;

/// Loads and checks the sandbox image (AGT-2).
const LOAD_SANDBOX_SCRIPT: &str = "usr/libexec/openclaw-appliance/load-sandbox-image";

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
        LOAD_SANDBOX_SCRIPT,
        0o755,
        format!(
            "#!/bin/sh\n\
             # AGT-2: load the baked sandbox image (never pulled) unless Docker already\n\
             # holds it under the ID recorded at build time; then check that ID.\n\
             set -eu\n\
             want='{expected}'\n\
             have=$(docker image inspect --format '{{{{.Id}}}}' '{image}' 2>/dev/null || true)\n\
             if [ \"$have\" != \"$want\" ]; then\n\
             \x20   docker load --input /{SANDBOX_ARCHIVE}\n\
             \x20   have=$(docker image inspect --format '{{{{.Id}}}}' '{image}')\n\
             fi\n\
             if [ \"$have\" != \"$want\" ]; then\n\
             \x20   echo \"sandbox image {image} has id $have, expected $want\" >&2\n\
             \x20   exit 1\n\
             fi\n\
             echo \"sandbox image {image} present with id $want\"\n",
            image = spec.sandbox.image,
            expected = ctx.sandbox_image_id,
        ),
    );
    tree.file(
        "etc/systemd/system/openclaw-sandbox-image.service",
        0o644,
        format!(
            "# AGT-2: the sandbox image is loaded from the image itself, never pulled.\n\
             [Unit]\n\
             Description=Load the OpenClaw sandbox image into Docker\n\
             Requires=docker.service\n\
             After=docker.service openclaw-firstboot.service\n\
             ConditionPathExists=/{SANDBOX_ARCHIVE}\n\
             \n\
             [Service]\n\
             Type=oneshot\n\
             RemainAfterExit=yes\n\
             ExecStart=/{LOAD_SANDBOX_SCRIPT}\n\
             TimeoutStartSec=1h\n\
             \n\
             [Install]\n\
             WantedBy=multi-user.target\n"
        ),
    );
    tree.symlink(
        "etc/systemd/system/multi-user.target.wants/openclaw-sandbox-image.service",
        "/etc/systemd/system/openclaw-sandbox-image.service",
    );

    // The user manager (and so the gateway) starts only after the sandbox
    // image is loaded and first boot is done.
    tree.file(
        &format!("etc/systemd/system/user@{uid}.service.d/10-openclaw.conf"),
        0o644,
        "[Unit]\n\
         After=openclaw-sandbox-image.service openclaw-firstboot.service\n\
         Wants=openclaw-sandbox-image.service\n",
    );

    // SRV-1: linger keeps the user manager running without a login.
    if user.linger {
        tree.file(&format!("var/lib/systemd/linger/{}", user.name), 0o644, "");
    }

    tree.dir(&format!("{home}/.config"), 0o700, uid, gid);
    tree.dir(&format!("{home}/.config/systemd"), 0o755, uid, gid);
    tree.dir(&format!("{home}/.config/systemd/user"), 0o755, uid, gid);
    tree.dir(
        &format!("{home}/.config/systemd/user/default.target.wants"),
        0o755,
        uid,
        gid,
    );
    tree.owned_file(
        &format!("{home}/.config/systemd/user/openclaw-gateway.service"),
        0o644,
        uid,
        gid,
        gateway_unit(spec),
    );
    tree.symlink(
        &format!("{home}/.config/systemd/user/default.target.wants/openclaw-gateway.service"),
        &format!("/{home}/.config/systemd/user/openclaw-gateway.service"),
    );
}

/// The gateway's user unit (SRV-1) with the sandboxing OpenClaw tolerates (SRV-7).
fn gateway_unit(spec: &Spec) -> String {
    format!(
        "# SRV-1: the gateway runs as a user unit of `{user}`, never as root.\n\
         [Unit]\n\
         Description=OpenClaw gateway\n\
         Documentation=https://docs.openclaw.ai\n\
         # Secrets arrive at first boot; without them the gateway stays down (SEC-2).\n\
         ConditionPathExists={FIRSTBOOT_DONE}\n\
         StartLimitIntervalSec=300\n\
         StartLimitBurst=5\n\
         \n\
         [Service]\n\
         Type=simple\n\
         ExecStart=/usr/local/bin/openclaw gateway --port {port}\n\
         Restart=on-failure\n\
         RestartSec=5\n\
         Environment=NODE_ENV=production\n\
         Environment=NODE_COMPILE_CACHE=%h/.cache/node-compile-cache\n\
         UMask=0077\n\
         # SRV-7: sandboxing that needs no namespaces in a user manager.\n\
         NoNewPrivileges=yes\n\
         LockPersonality=yes\n\
         RestrictRealtime=yes\n\
         RestrictSUIDSGID=yes\n\
         SystemCallArchitectures=native\n\
         RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n",
        user = spec.gateway_user().name,
        port = spec.gateway.port,
    )
}
