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

use super::{Ctx, FIRSTBOOT_DONE as DONE, expect};
use crate::credential::Credential;
use crate::machine::Machine;
use crate::suite::report::Outcome;

/// Where the appliance mounts the volume (`appliance::firstboot`).
const MOUNT_POINT: &str = "/var/lib/openclaw-state";
/// The volume's marker file.
const MARKER: &str = "/var/lib/openclaw-state/.openclaw-state-volume";
/// First boot's record on the volume.
const RECORD: &str = "/var/lib/openclaw-state/appliance/firstboot.log";
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
    hostutil::sha256_file(path).with_context(|| format!("hashing {}", path.display()))
}

/// The user-data of the main machine without its gateway token, as a
/// credential for an extra one: first boot generates the token, so that
/// UPD-2 can tell a kept token from one the user-data sets again.
fn userdata(ctx: &Ctx<'_>) -> Result<Credential> {
    let text: String = crate::suite::run::userdata_text(ctx.secrets, ctx.facts.tailscale, None)
        .lines()
        .filter(|l| !l.starts_with("gateway-token"))
        .map(|l| format!("{l}\n"))
        .collect();
    Credential::new("openclaw.userdata", text.as_bytes())
}

/// Where UPD-1's machine records, for UPD-2, what it left on the volume.
fn before_path(ctx: &Ctx<'_>) -> PathBuf {
    volume_path(ctx, "upd-before").with_extension("json")
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

/// A case's numbered findings: `ok:`/`FAIL:` lines and notes, and whether
/// every check held.
#[derive(Default)]
struct Checklist {
    lines: Vec<String>,
    failed: bool,
    checked: bool,
}

impl Checklist {
    /// Records a check: `ok: what` or `FAIL: what`.
    fn check(&mut self, cond: bool, what: impl Into<String>) {
        self.failed |= !cond;
        self.checked = true;
        let what = what.into();
        self.lines
            .push(format!("{}: {what}", if cond { "ok" } else { "FAIL" }));
    }

    /// Adds a line that is not a check.
    fn note(&mut self, line: impl Into<String>) {
        self.lines.push(line.into());
    }

    /// Whether at least one check ran and all held.
    fn passed(&self) -> bool {
        self.checked && !self.failed
    }

    fn text(&self) -> String {
        self.lines.join("\n")
    }
}

/// Waits until first boot is done, or it or the volume unit failed.
fn wait_first_boot_ended(m: &mut Machine) -> Result<()> {
    m.wait_until_succeeds(
        &format!(
            "test -e {DONE} || systemctl is-failed -q openclaw-firstboot.service || \
             systemctl is-failed -q {VOLUME_UNIT}"
        ),
        FIRST_BOOT_LIMIT,
    )?;
    Ok(())
}

/// Why first boot did not complete, for a failure's first line (a long
/// report is cut in the middle by the CI's log view): the unit's state and
/// the last lines first boot logged that say `error` or `fail`.
fn first_boot_failure(m: &mut Machine) -> Result<String> {
    let out = m.succeed(
        "systemctl show -p ActiveState -p Result --value openclaw-firstboot.service | tr '\\n' ' '; \
         journalctl -b -o cat -u openclaw-firstboot.service --no-pager \
         | grep -iE 'error|fail|timed out' | tail -n 4 || true",
    )?;
    Ok(format!(": {}", out.trim().replace('\n', " | ")))
}

/// The last lines the volume's unit and first boot logged on this boot,
/// redacted, for a failed check's detail.
fn volume_journal(m: &mut Machine, secrets: &super::Secrets) -> Result<String> {
    let log = m.succeed(&format!(
        "journalctl -b -o cat -u {VOLUME_UNIT} -u openclaw-firstboot.service --no-pager | tail -n 40"
    ))?;
    Ok(format!(
        "volume and first-boot journal:\n{}",
        secrets.redact(&log)
    ))
}

/// UPD-1: with a blank volume attached, first boot formats it and every
/// durable state lives on it; the root disk underneath holds none of it.
pub fn upd_1(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    let file = volume_path(ctx, "upd-volume");
    let before = before_path(ctx);
    let _ = fs::remove_file(&before);
    blank_volume(&file, 1024)?;
    let mut cfg = ctx.side_config("upd1", vec![userdata(ctx)?])?;
    cfg.extra_args.extend(volume_args(&file, VOLUME_ID));
    // On the main pass's clock (icount under TCG): guest-side deadlines
    // (Tailscale's, OpenClaw's) then measure work, not emulation speed; CI
    // once saw this machine's first boot fail on host time, where a
    // machine on icount had passed. With a rebuild to follow, the gateway
    // must also start and make a session.
    let rebuild = ctx.facts.image_b.is_some();
    cfg.icount = ctx.machine.config_mut().icount;
    let user = ctx.facts.user.clone();
    let tailscale = ctx.facts.tailscale;
    let empty = digest("");
    let facts = ctx.facts.clone();
    let secrets = ctx.secrets.clone();
    let seen = ctx.with_side_machine(cfg, true, |m| {
        let home = format!("/home/{user}");
        wait_first_boot_ended(m)?;
        let mut list = Checklist::default();
        let (code, _) = m.execute(&format!("test -e {DONE}"))?;
        let why = if code == 0 {
            String::new()
        } else {
            first_boot_failure(m)?
        };
        list.check(code == 0, format!("first boot completed ({DONE}){why}"));
        let by_id = m.succeed("ls /dev/disk/by-id/ | grep '^scsi-0HC_Volume_' || true")?;
        list.check(
            by_id.lines().any(|l| l.trim() == format!("scsi-0HC_Volume_{VOLUME_ID}")),
            format!("the volume is /dev/disk/by-id/{}", by_id.trim()),
        );
        let mount = m.succeed(&format!(
            "findmnt -n -o SOURCE,FSTYPE,LABEL {MOUNT_POINT} || true"
        ))?;
        list.check(
            mount.contains("ext4") && mount.contains("openclaw-state"),
            format!("{MOUNT_POINT}: {}", mount.trim()),
        );
        let (marker, _) = m.execute(&format!("test -s {MARKER}"))?;
        list.check(marker == 0, format!("marker {MARKER}"));
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
            list.check(
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
        let vol_ts = m.execute("test -s /var/lib/openclaw-state/tailscale/tailscaled.state")?.0;
        m.succeed("umount /run/upd-rootview")?;
        list.check(
            vol_token != empty,
            "the gateway token (generated by first boot) is in the volume's openclaw.json",
        );
        list.check(
            root_token == empty,
            "the root disk's openclaw.json (under the bind) has no token",
        );
        list.check(root_env != 0, "the root disk has no ~/.openclaw/.env");
        if tailscale {
            list.check(vol_ts == 0, "tailscaled's state is on the volume (/var/lib/openclaw-state/tailscale/tailscaled.state)");
            list.check(
                root_ts.is_empty(),
                format!(
                    "the root disk's /var/lib/tailscale (under the bind) is empty: `{root_ts}`"
                ),
            );
        }
        let record = m.succeed(&format!("cat {RECORD} 2>/dev/null || true"))?;
        list.check(
            record.contains("first boot completed"),
            format!("first-boot record on the volume: {}", record.trim()),
        );
        if !list.passed() {
            list.note(volume_journal(m, &secrets)?);
        } else if rebuild {
            match make_state(m, &facts, &secrets, &user) {
                Ok(state) => {
                    let state = serde_json::json!({
                        "token": vol_token,
                        "node_key": state.node_key,
                        "hostname": state.hostname,
                        "workspace": state.workspace,
                    });
                    fs::write(&before, state.to_string())
                        .with_context(|| format!("writing {}", before.display()))?;
                    list.note("for UPD-2: a session and a workspace file made on image A");
                }
                Err(e) => list.note(format!("for UPD-2: could not make state on image A: {e:#}")),
            }
        }
        Ok((list.passed(), list.text()))
    })?;
    if !before.exists() {
        let _ = fs::remove_file(&file);
    }
    Ok(expect(seen.0, seen.1))
}

/// The label of the session image A makes (UPD-2 looks for it on B).
const SESSION_LABEL: &str = "upd-rebuild";
/// The workspace file image A writes, relative to home.
const WORKSPACE_FILE: &str = ".openclaw/workspace/upd-rebuild.txt";
/// The volume's id (its by-id name's end).
const VOLUME_ID: &str = "100001";

/// What image A's machine made for UPD-2 to find again.
struct Made {
    node_key: String,
    hostname: String,
    workspace: String,
}

/// Tailscale's node key of the machine (`""` without one).
fn node_key(m: &mut Machine) -> Result<String> {
    Ok(m.succeed(
        "tailscale status --json --peers=false 2>/dev/null | grep -o 'nodekey:[0-9a-f]*' | head -n1 || true",
    )?
    .trim()
    .to_string())
}

/// On image A: waits for the gateway, makes a session (as SRV-5 does) and
/// a workspace file, and notes the Tailscale node key.
fn make_state(
    m: &mut Machine,
    facts: &super::Facts,
    secrets: &super::Secrets,
    user: &str,
) -> Result<Made> {
    crate::suite::run::wait_gateway(m, facts, secrets, false)
        .map_err(|e| anyhow::anyhow!("the gateway did not come up: {e}"))?;
    let create = super::as_named_user(
        user,
        &format!(
            "openclaw gateway call sessions.create --timeout 120000 --params '{{\"agentId\":\"main\",\"label\":\"{SESSION_LABEL}\"}}' --json 2>&1"
        ),
    );
    let mut created = m.execute(&create)?;
    for _ in 1..3 {
        if created.0 == 0 {
            break;
        }
        std::thread::sleep(Duration::from_secs(20));
        created = m.execute(&create)?;
    }
    if created.0 != 0 {
        bail!("sessions.create failed: {}", secrets.redact(&created.1));
    }
    let workspace = crate::suite::run::random_hex(16)?;
    m.succeed(&super::as_named_user(
        user,
        &format!("mkdir -p .openclaw/workspace && printf '%s\\n' {workspace} > {WORKSPACE_FILE}"),
    ))?;
    let hostname = m.succeed("hostname")?.trim().to_string();
    Ok(Made {
        node_key: node_key(m)?,
        hostname,
        workspace,
    })
}

/// UPD-2: image A's volume on a fresh machine of image B (a rebuild):
/// first boot runs again on the new root disk and keeps the gateway token
/// (A generated it; the user-data has none), the session, the workspace
/// and the Tailscale node (logged in without using the auth key).
pub fn upd_2(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    let Some(image_b) = ctx.facts.image_b.clone() else {
        return Ok(Outcome::NotRun(
            "no second image to rebuild onto: `vm-test --image-b PATH` (`cargo xtask build-image --variant-hostname openclaw-rebuilt --out target/image-b` builds one; `cargo xtask ci` passes none)"
                .into(),
        ));
    };
    let before_file = before_path(ctx);
    let Ok(text) = fs::read_to_string(&before_file) else {
        return Ok(Outcome::NotRun(
            "image A's machine (UPD-1) left no state to rebuild with: see UPD-1's detail".into(),
        ));
    };
    let before: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("parsing {}", before_file.display()))?;
    let field = |k: &str| {
        before
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let (token_a, node_a, host_a, workspace_a) = (
        field("token"),
        field("node_key"),
        field("hostname"),
        field("workspace"),
    );
    let file = volume_path(ctx, "upd-volume");
    let tailnet = ctx.tailnet;
    let mut cfg = ctx.side_config("upd2", vec![userdata(ctx)?])?;
    cfg.image = image_b.clone();
    cfg.extra_args.extend(volume_args(&file, VOLUME_ID));
    cfg.icount = ctx.machine.config_mut().icount;
    let user = ctx.facts.user.clone();
    let port = ctx.facts.port;
    let tailscale = ctx.facts.tailscale;
    let facts = ctx.facts.clone();
    let secrets = ctx.secrets.clone();
    let seen = ctx.with_side_machine(cfg, true, |m| {
        let home = format!("/home/{user}");
        wait_first_boot_ended(m)?;
        let mut list = Checklist::default();
        let done = m.execute(&format!("test -e {DONE}"))?.0 == 0;
        list.check(done, "first boot ran again on the new root disk and completed");
        let host_b = m.succeed("hostname")?.trim().to_string();
        list.check(
            host_b != host_a,
            format!("image B booted (its host name `{host_b}`, image A's `{host_a}`)"),
        );
        let token_b = token_digest(m, &format!("{home}/.openclaw/openclaw.json"))?;
        list.check(
            token_b == token_a && !token_a.is_empty(),
            "the gateway token is the one image A's first boot generated (sha256 compared)",
        );
        let gateway = crate::suite::run::wait_gateway(m, &facts, &secrets, false);
        match gateway {
            Ok(()) => {
                let (right, _) = super::net::gateway_status_on(m, port, &user, super::net::Bearer::Right)?;
                let (wrong, _) = super::net::gateway_status_on(m, port, &user, super::net::Bearer::Wrong)?;
                list.check(
                    super::net::past_auth(&right) && super::net::auth_refused(&wrong),
                    format!("the rebuilt gateway takes that token (HTTP {right}) and refuses a wrong one (HTTP {wrong})"),
                );
            }
            Err(e) => list.check(false, format!("the rebuilt gateway did not come up: {e}")),
        }
        let sessions = m.succeed(&format!(
            "grep -rl --include='*.json' --include='*.jsonl' --include='*.sqlite' {SESSION_LABEL} {home}/.openclaw/agents 2>/dev/null | head -n3 || true"
        ))?;
        list.check(
            !sessions.trim().is_empty(),
            format!("image A's session `{SESSION_LABEL}` is in the session store: {}", sessions.trim().replace('\n', ", ")),
        );
        let ws = m.succeed(&format!("cat {home}/{WORKSPACE_FILE} 2>/dev/null || true"))?;
        list.check(
            ws.trim() == workspace_a && !workspace_a.is_empty(),
            format!("the workspace file image A wrote is there (~/{WORKSPACE_FILE})"),
        );
        if tailscale {
            let node_b = node_key(m)?;
            list.check(
                node_b == node_a && !node_a.is_empty(),
                format!("the same Tailscale node key ({}…)", node_b.chars().take(16).collect::<String>()),
            );
            // From the control server's side: its registration log.
            match tailnet.map(|t| t.registrations()) {
                Some(Ok(regs)) => {
                    let mine: Vec<_> = regs.iter().filter(|r| r.node_key == node_a).collect();
                    let keyed = mine.iter().filter(|r| r.auth_key_presented).count();
                    let relogins = mine.iter().filter(|r| r.is_keyless_relogin()).count();
                    list.check(
                        !node_a.is_empty() && keyed == 1 && relogins >= 1,
                        format!(
                            "the control server saw that node register with the auth key {keyed} time(s) \
                             (image A's first boot: 1 expected) and again without it {relogins} time(s) \
                             (image B: at least 1)"
                        ),
                    );
                }
                Some(Err(e)) => list.check(false, format!("the control server's registration log: {e:#}")),
                None => list.check(false, "no test tailnet to ask"),
            }
            // The appliance's own account (weaker: its log).
            let log = m.succeed("journalctl -b -o cat -u openclaw-firstboot.service --no-pager | grep 'step tailscale' || true")?;
            list.check(
                log.contains("already logged in"),
                format!("first boot says it did not use the auth key (its log): `{}`", log.trim()),
            );
        }
        let record = m.succeed(&format!("cat {RECORD} 2>/dev/null || true"))?;
        list.check(
            record.lines().filter(|l| l.contains("first boot completed")).count() == 2
                && record.contains("kept from the state volume"),
            format!("the volume's first-boot record has both boots:\n{}", record.trim()),
        );
        if !list.passed() {
            list.note(volume_journal(m, &secrets)?);
        }
        Ok((list.passed(), list.text()))
    })?;
    let _ = fs::remove_file(&file);
    let _ = fs::remove_file(&before_file);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_volume_is_a_scsi_disk_named_as_hetzner_names_it() {
        let args = volume_args(Path::new("/tmp/v.raw"), "42");
        let text: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(text[1], "virtio-scsi-pci,id=statescsi");
        assert!(text[3].starts_with("file=/tmp/v.raw,format=raw,if=none,id=statevol"));
        assert_eq!(
            text[5],
            "scsi-hd,bus=statescsi.0,drive=statevol,vendor=HC,product=Volume,serial=42"
        );
    }
}
