//! UPD: updates by rebuild. The state volume is a disk of its own, attached
//! the way Hetzner attaches a Volume (a SCSI disk, vendor `HC`, product
//! `Volume`, so udev names it `/dev/disk/by-id/scsi-0HC_Volume_<id>`).
//! UPD-1 and UPD-4 boot extra machines with a blank and with a foreign
//! volume; UPD-3 reads the main machine, which has none.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use sha2::{Digest, Sha256};

use super::{Ctx, expect};
use crate::credential::Credential;
use crate::machine::Machine;
use crate::suite::report::Outcome;

/// Where the appliance mounts the volume (`appliance::firstboot`).
const MOUNT_POINT: &str = "/var/lib/openclaw-state";
/// The volume's marker file.
const MARKER: &str = "/var/lib/openclaw-state/.openclaw-state-volume";
/// First boot's record on the volume.
const RECORD: &str = "/var/lib/openclaw-state/appliance/firstboot.log";
/// First boot's done marker (on the root disk).
const DONE: &str = "/var/lib/openclaw-appliance/firstboot.done";
/// The unit that mounts the volume.
const VOLUME_UNIT: &str = "openclaw-state-volume.service";
/// What the unit says without a volume (UPD-3).
const NO_VOLUME_TEXT: &str = "rebuilding this server (`hcloud server rebuild`) will lose them";
/// What the unit says of a foreign volume (UPD-4).
const FOREIGN_TEXT: &str = "not an OpenClaw state volume";
/// How long an extra machine may take to finish first boot (TCG).
const FIRST_BOOT_LIMIT: Duration = Duration::from_secs(900);

/// QEMU arguments that attach `file` as Hetzner Volume `id`.
pub fn volume_args(file: &Path, id: &str) -> Vec<OsString> {
    let mut drive = OsString::from("file=");
    drive.push(file.as_os_str());
    drive.push(",format=raw,if=none,id=statevol,cache=writeback");
    vec![
        "-device".into(),
        "virtio-scsi-pci,id=statescsi".into(),
        "-drive".into(),
        drive,
        "-device".into(),
        format!("scsi-hd,bus=statescsi.0,drive=statevol,vendor=HC,product=Volume,serial={id}")
            .into(),
    ]
}

/// A sparse blank volume of `mib` MiB at `path` (a new Hetzner Volume is
/// all zeros).
fn blank_volume(path: &Path, mib: u64) -> Result<()> {
    let _ = fs::remove_file(path);
    let f = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.set_len(mib << 20)
        .with_context(|| format!("sizing {}", path.display()))?;
    Ok(())
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut f = fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("hashing {}", path.display()))?;
    Ok(format!("{:x}", h.finalize()))
}

/// The user-data of the main machine, as a credential for an extra one.
fn userdata(ctx: &Ctx<'_>) -> Result<Credential> {
    let text = crate::suite::run::userdata_text(ctx.secrets, ctx.facts.tailscale, None);
    Credential::new("openclaw.userdata", text.as_bytes())
}

fn volume_path(ctx: &Ctx<'_>, name: &str) -> PathBuf {
    ctx.facts
        .out_dir
        .join(format!("{}-{name}.raw", ctx.facts.firmware))
}

/// The sha256 of the first `"token": "…"` of a config file in the guest
/// (the token itself never crosses the channel).
fn token_digest(m: &mut Machine, file: &str) -> Result<String> {
    let out = m.succeed(&format!(
        "{{ grep -o '\"token\": \"[^\"]*\"' {file} 2>/dev/null || true; }} | head -n1 | tr -d '\\n' | sha256sum | cut -c1-64"
    ))?;
    Ok(out.trim().to_string())
}

fn digest(text: &str) -> String {
    format!("{:x}", Sha256::digest(text.as_bytes()))
}

/// UPD-1: with a blank volume attached, first boot formats it and every
/// durable state lives on it; the root disk underneath holds none of it.
pub fn upd_1(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    let file = volume_path(ctx, "upd1-volume");
    blank_volume(&file, 1024)?;
    let mut cfg = ctx.side_config("upd1", vec![userdata(ctx)?])?;
    cfg.extra_args.extend(volume_args(&file, "100001"));
    let user = ctx.facts.user.clone();
    let tailscale = ctx.facts.tailscale;
    let token_line = digest(&format!("\"token\": \"{}\"", ctx.secrets.gateway_token));
    let empty = digest("");
    let seen = ctx.with_side_machine(cfg, true, |m| {
        let home = format!("/home/{user}");
        m.wait_until_succeeds(
            &format!(
                "test -e {DONE} || systemctl is-failed -q openclaw-firstboot.service || \
                 systemctl is-failed -q {VOLUME_UNIT}"
            ),
            FIRST_BOOT_LIMIT,
        )?;
        let mut lines = Vec::new();
        let mut ok = true;
        let mut check = |cond: bool, what: String| {
            ok &= cond;
            lines.push(format!("{}: {what}", if cond { "ok" } else { "FAIL" }));
        };
        let (code, _) = m.execute(&format!("test -e {DONE}"))?;
        check(code == 0, format!("first boot completed ({DONE})"));
        let by_id = m.succeed("ls /dev/disk/by-id/ | grep '^scsi-0HC_Volume_' || true")?;
        check(
            by_id.lines().any(|l| l.trim() == "scsi-0HC_Volume_100001"),
            format!("the volume is /dev/disk/by-id/{}", by_id.trim()),
        );
        let mount = m.succeed(&format!(
            "findmnt -n -o SOURCE,FSTYPE,LABEL {MOUNT_POINT} || true"
        ))?;
        check(
            mount.contains("ext4") && mount.contains("openclaw-state"),
            format!("{MOUNT_POINT}: {}", mount.trim()),
        );
        let (marker, _) = m.execute(&format!("test -s {MARKER}"))?;
        check(marker == 0, format!("marker {MARKER}"));
        let vol_dev = m
            .succeed(&format!("mountpoint -d {MOUNT_POINT} || true"))?
            .trim()
            .to_string();
        let mountinfo = m.succeed("cat /proc/self/mountinfo")?;
        let mut durable = vec![
            (format!("{home}/.openclaw"), "/openclaw"),
            (
                format!("{home}/.local/state/openclaw-appliance"),
                "/workspace-sync",
            ),
        ];
        if tailscale {
            durable.push(("/var/lib/tailscale".into(), "/tailscale"));
        }
        for (target, root) in &durable {
            let bound = mountinfo.lines().any(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                f.len() > 4 && f[2] == vol_dev && f[3] == *root && f[4] == target
            });
            check(
                bound,
                format!("{target} is bound from the volume's {root} ({vol_dev})"),
            );
        }
        // The root disk underneath: a non-recursive bind of / shows it
        // without the volume's binds on top.
        m.succeed("mkdir -p /run/upd-rootview && mount --bind / /run/upd-rootview")?;
        let root_token = token_digest(m, &format!("/run/upd-rootview{home}/.openclaw/openclaw.json"))?;
        let vol_token = token_digest(m, &format!("{home}/.openclaw/openclaw.json"))?;
        let root_env = m.execute(&format!("test -e /run/upd-rootview{home}/.openclaw/.env"))?.0;
        let root_ts = m
            .succeed("ls -A /run/upd-rootview/var/lib/tailscale 2>/dev/null || true")?
            .trim()
            .to_string();
        let vol_ts = m.execute("test -s /var/lib/tailscale/tailscaled.state")?.0;
        m.succeed("umount /run/upd-rootview")?;
        check(
            vol_token == token_line,
            "the gateway token is in the volume's openclaw.json".into(),
        );
        check(
            root_token == empty,
            "the root disk's openclaw.json (under the bind) has no token".into(),
        );
        check(root_env != 0, "the root disk has no ~/.openclaw/.env".into());
        if tailscale {
            check(vol_ts == 0, "tailscaled's state is on the volume".into());
            check(
                root_ts.is_empty(),
                format!(
                    "the root disk's /var/lib/tailscale (under the bind) is empty: `{root_ts}`"
                ),
            );
        }
        let record = m.succeed(&format!("cat {RECORD} 2>/dev/null || true"))?;
        check(
            record.contains("first boot completed"),
            format!("first-boot record on the volume: {}", record.trim()),
        );
        if !ok {
            let log = m.succeed(&format!(
                "journalctl -b -o cat -u {VOLUME_UNIT} -u openclaw-firstboot.service --no-pager | tail -n 40"
            ))?;
            lines.push(format!("volume and first-boot journal:\n{log}"));
        }
        Ok((ok, lines.join("\n")))
    })?;
    let _ = fs::remove_file(&file);
    Ok(expect(seen.0, seen.1))
}

/// UPD-3: the main machine has no volume: it works (the rest of the suite)
/// and its first boot said on the console that a rebuild loses state.
pub fn upd_3(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    let m = &mut *ctx.machine;
    let journal = m.succeed(&format!(
        "journalctl -o cat -u {VOLUME_UNIT} --no-pager | tail -n 20"
    ))?;
    let console = fs::read_to_string(m.serial_log_path()).unwrap_or_default();
    let mounted = m.execute(&format!("findmnt {MOUNT_POINT}"))?.0 == 0;
    let active = m
        .succeed(&format!("systemctl is-active {VOLUME_UNIT} || true"))?
        .trim()
        .to_string();
    let in_journal = journal.contains(NO_VOLUME_TEXT);
    let on_console = console.contains(NO_VOLUME_TEXT);
    Ok(expect(
        in_journal && on_console && !mounted && active == "active",
        format!(
            "no volume attached; {VOLUME_UNIT}: {active}; warning in its journal: {in_journal}, \
             on the serial console: {on_console}; {MOUNT_POINT} mounted: {mounted}"
        ),
    ))
}

/// UPD-4: a volume holding another filesystem is never formatted or
/// written: the volume unit fails, first boot, tailscaled and the gateway
/// stay down, the console names the cause, and the volume's bytes are
/// unchanged.
pub fn upd_4(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    let file = volume_path(ctx, "upd4-foreign");
    blank_volume(&file, 64)?;
    let mkfs = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "somebodys-data"])
        .arg(&file)
        .output()
        .context(
            "running mkfs.ext4 on the host (package e2fsprogs; `cargo xtask doctor` installs it)",
        )?;
    if !mkfs.status.success() {
        bail!(
            "mkfs.ext4 {} failed: {}",
            file.display(),
            String::from_utf8_lossy(&mkfs.stderr)
        );
    }
    let before = sha256_file(&file)?;
    let mut cfg = ctx.side_config("upd4", vec![userdata(ctx)?])?;
    cfg.extra_args.extend(volume_args(&file, "100004"));
    let user = ctx.facts.user.clone();
    let seen = ctx.with_side_machine(cfg, true, |m| {
        m.wait_until_succeeds(
            &format!("systemctl is-failed -q {VOLUME_UNIT} || test -e {DONE}"),
            FIRST_BOOT_LIMIT,
        )?;
        let failed = m
            .execute(&format!("systemctl is-failed -q {VOLUME_UNIT}"))?
            .0
            == 0;
        let names = m
            .wait_for_console_text(FOREIGN_TEXT, Duration::from_secs(120))
            .is_ok();
        let mounted = m.execute(&format!("findmnt {MOUNT_POINT}"))?.0 == 0;
        let done = m.execute(&format!("test -e {DONE}"))?.0 == 0;
        let gateway = m
            .execute(&format!("pgrep -u {user} -f 'openclaw.*gateway'"))?
            .0
            == 0;
        let tailscaled = m.execute("systemctl is-active -q tailscaled.service")?.0 == 0;
        Ok((
            failed && names && !mounted && !done && !gateway && !tailscaled,
            format!(
                "{VOLUME_UNIT} failed: {failed}\nconsole names the cause: {names}\n\
                 volume mounted: {mounted}\nfirst boot done: {done}\ngateway running: {gateway}\n\
                 tailscaled active: {tailscaled}"
            ),
        ))
    })?;
    let after = sha256_file(&file)?;
    let _ = fs::remove_file(&file);
    let (verdict, text) = seen;
    let unchanged = before == after;
    Ok(expect(
        verdict && unchanged,
        format!(
            "a volume holding ext4 labelled `somebodys-data`:\n{text}\nits bytes unchanged after the boot: {unchanged} (sha256 {})",
            &after[..16]
        ),
    ))
}
