//! SRV-*, SSH-*, BOOT-1/2: accounts, units, modes, sysctls, boot health.

use std::time::Duration;

use anyhow::Result;

use image_spec::spec::OPENSSH_PACKAGE;

use super::{Ctx, GATEWAY_UNIT, as_user, expect};
use crate::suite::report::Outcome;

/// SRV-1: the gateway process runs as `openclaw`, natively, from the
/// enabled and active system unit; and `openclaw` tries to change, mask,
/// override or stop that unit, and fails every time.
pub fn srv_1(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    let user = ctx.facts.user.clone();
    // Running is enough (listening is NET-3's): under TCG the gateway runs
    // for minutes per start attempt.
    ctx.machine
        .wait_for_unit(GATEWAY_UNIT, None, Duration::from_secs(600))?;
    // One property per `systemctl show`: with several, `--value` prints
    // them in systemd's order, not the order asked.
    let state = ctx.machine.succeed(&format!(
        "systemctl is-active {GATEWAY_UNIT} || true; systemctl is-enabled {GATEWAY_UNIT} || true; \
         systemctl show -p FragmentPath --value {GATEWAY_UNIT}; \
         systemctl show -p MainPID --value {GATEWAY_UNIT}"
    ))?;
    let lines: Vec<&str> = state.lines().map(str::trim).collect();
    let (active, enabled, fragment, pid) = match lines.as_slice() {
        [a, e, f, p, ..] => (*a, *e, *f, *p),
        _ => ("?", "?", "?", "0"),
    };
    let owner = ctx
        .machine
        .succeed(&format!("ps -o user= -p {pid} || true"))?;
    let cgroup = ctx
        .machine
        .succeed(&format!("cat /proc/{pid}/cgroup 2>/dev/null || true"))?;
    let native =
        cgroup.contains(&format!("system.slice/{GATEWAY_UNIT}")) && !cgroup.contains("docker");
    let fragment_owner = ctx
        .machine
        .succeed(&format!("stat -c '%U %a' {fragment} || true"))?;
    let attempts = ctx.machine.succeed(&as_user(ctx, &unit_attack_script()))?;
    let escapes: Vec<&str> = attempts
        .lines()
        .filter(|l| l.starts_with("WORKED"))
        .collect();
    let still = ctx
        .machine
        .succeed(&format!("systemctl is-active {GATEWAY_UNIT} || true"))?;
    let ok = active == "active"
        && enabled == "enabled"
        && fragment.starts_with("/etc/systemd/system/")
        && fragment_owner.starts_with("root ")
        && owner.trim() == user
        && native
        && escapes.is_empty()
        && still.trim() == "active";
    Ok(expect(
        ok,
        format!(
            "system unit {fragment} ({}) {active} / {enabled}; MainPID {pid} runs as {}; cgroup {}; \
             as {user}: {}; afterwards {}",
            fragment_owner.trim(),
            owner.trim(),
            cgroup.trim(),
            attempts.lines().collect::<Vec<_>>().join("; "),
            still.trim()
        ),
    ))
}

/// What `openclaw` tries against its gateway's unit (SRV-1): each line
/// says `WORKED <what>` or `refused <what>`.
fn unit_attack_script() -> String {
    let unit = GATEWAY_UNIT;
    let attempts = [
        (
            "rewrite the unit",
            format!("echo '# x' >> /etc/systemd/system/{unit}"),
        ),
        (
            "add a drop-in",
            format!(
                "mkdir -p /etc/systemd/system/{unit}.d && echo '[Service]' > /etc/systemd/system/{unit}.d/x.conf"
            ),
        ),
        (
            "add a runtime drop-in",
            format!(
                "mkdir -p /run/systemd/system/{unit}.d && echo '[Service]' > /run/systemd/system/{unit}.d/x.conf"
            ),
        ),
        (
            "mask it",
            format!("systemctl mask --runtime --no-ask-password {unit}"),
        ),
        (
            "stop it",
            format!("systemctl stop --no-ask-password {unit}"),
        ),
        (
            "set a property",
            format!("systemctl set-property --runtime --no-ask-password {unit} NoNewPrivileges=no"),
        ),
        (
            "edit it",
            format!("SYSTEMD_EDITOR=true systemctl edit --runtime --no-ask-password {unit}"),
        ),
    ];
    attempts
        .iter()
        .map(|(what, cmd)| {
            format!("if ( {cmd} ) >/dev/null 2>&1; then echo 'WORKED {what}'; else echo 'refused {what}'; fi\n")
        })
        .collect()
}

/// SRV-2: every password field of `/etc/shadow` is locked (`*` or `!…`).
pub fn srv_2(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    let fields = ctx.machine.succeed("cut -d: -f1,2 /etc/shadow")?;
    let usable: Vec<&str> = fields
        .lines()
        .filter(|l| {
            let pw = l.split_once(':').map_or("", |(_, p)| p);
            !(pw.starts_with('*') || pw.starts_with('!'))
        })
        .map(|l| l.split(':').next().unwrap_or(l))
        .collect();
    let n = fields.lines().count();
    Ok(expect(
        usable.is_empty() && n > 0,
        if usable.is_empty() {
            format!("{n} accounts, all locked")
        } else {
            format!("usable password: {}", usable.join(", "))
        },
    ))
}

/// SRV-3: `openclaw` has no sudo rights, tried as the attacker: as
/// `openclaw`, `sudo -n true` fails; and `id openclaw` names no group that
/// grants root (ESC-1's list). The sudoers files are read too, but only as
/// the weaker proof (a config read says what sudo should do, the attempt
/// what it does).
pub fn srv_3(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    let user = ctx.facts.user.clone();
    let attempt = ctx.machine.run(&as_user(ctx, "sudo -n true"))?;
    let groups = ctx.machine.succeed(&format!("id -nG {user}"))?;
    let sudoers = ctx
        .machine
        .execute(&format!(
            "grep -rs '^[^#]*\\b{user}\\b' /etc/sudoers /etc/sudoers.d || true"
        ))?
        .1;
    let (ok, seen) = judge_srv3(
        attempt.status,
        attempt.stderr_text().trim(),
        &groups,
        &sudoers,
    );
    Ok(expect(ok, seen))
}

/// SRV-3's verdict from `sudo -n true` run as the user (exit status and
/// stderr), the user's `id -nG` and the sudoers lines naming the user.
fn judge_srv3(status: i32, stderr: &str, groups: &str, sudoers: &str) -> (bool, String) {
    let groups: Vec<&str> = groups.split_whitespace().collect();
    let bad = super::esc::root_granting(&groups);
    let sudoers = sudoers.trim();
    let ok = status != 0 && bad.is_empty() && sudoers.is_empty();
    (
        ok,
        format!(
            "tried as the user: `sudo -n true` exit {status}{}; groups {groups:?}, root-granting: {bad:?}; \
             config read (weaker proof): sudoers lines naming the user: {}",
            if stderr.is_empty() {
                String::new()
            } else {
                format!(" ({stderr})")
            },
            if sudoers.is_empty() { "none" } else { sudoers }
        ),
    )
}

/// SRV-4: unattended-upgrades installed and enabled for the security origin, no reboot.
pub fn srv_4(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    let installed = ctx
        .machine
        .execute("dpkg-query -W -f='${Status}' unattended-upgrades")?
        .1;
    let config = ctx.machine.succeed("apt-config dump")?;
    let pick = |key: &str| -> String {
        config
            .lines()
            .filter(|l| l.starts_with(key))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let origins = pick("Unattended-Upgrade::Origins-Pattern::");
    let reboot = pick("Unattended-Upgrade::Automatic-Reboot ");
    let periodic = pick("APT::Periodic::Unattended-Upgrade ");
    let timer = ctx
        .machine
        .execute("systemctl is-enabled apt-daily-upgrade.timer")?
        .1;
    let ok = installed.contains("install ok installed")
        && origins.contains("-security")
        && reboot.contains("\"false\"")
        && periodic.contains("\"1\"")
        && timer.trim() == "enabled";
    Ok(expect(
        ok,
        format!(
            "{}; {origins}; {reboot}; {periodic}; apt-daily-upgrade.timer {}",
            installed.trim(),
            timer.trim()
        ),
    ))
}

/// SRV-5: modes of the gateway's state, after the gateway created a session
/// through OpenClaw's own code; OpenClaw's deep audit reports 0 critical.
pub fn srv_5(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    let user = ctx.facts.user.clone();
    // The CLI's default 10 s call timeout is short for a gateway that has
    // just come up on a slow machine: allow 120 s, and three tries.
    let create = as_user(
        ctx,
        "openclaw gateway call sessions.create --timeout 120000 --params '{\"agentId\":\"main\",\"label\":\"vmtest\"}' --json 2>&1",
    );
    let mut created = ctx.machine.execute(&create)?;
    for _ in 1..3 {
        if created.0 == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_secs(20));
        created = ctx.machine.execute(&create)?;
    }
    let home = format!("/home/{user}/.openclaw");
    let listing = ctx.machine.succeed(&format!(
        "cd {home} && find . \\( -name '*.sqlite' -o -name '*.jsonl' -o -name 'sessions.json' -o -name 'auth-profiles.json' -o -name 'openclaw.json' -o -name '.env' -o -path ./credentials -o -path . \\) -printf '%m %u %p\\n' | sort"
    ))?;
    let dirs = ctx.machine.succeed(&format!(
        "cd {home} && find . -name '*.sqlite' -printf '%h\\n' | sort -u | while read -r d; do while [ \"$d\" != . ]; do stat -c '%a %n' \"$d\"; d=$(dirname \"$d\"); done; done | sort -u"
    ))?;
    let mut bad = Vec::new();
    let mut sessions = 0;
    for line in listing.lines() {
        let mut it = line.splitn(3, ' ');
        let (mode, owner, path) = (
            it.next().unwrap_or(""),
            it.next().unwrap_or(""),
            it.next().unwrap_or(""),
        );
        let want = if path == "." || path == "./credentials" {
            "700"
        } else {
            "600"
        };
        if path.ends_with(".sqlite") || path.ends_with(".jsonl") {
            sessions += 1;
        }
        if mode != want || owner != user {
            bad.push(format!("{path}: {mode} {owner} (want {want} {user})"));
        }
    }
    for line in dirs.lines() {
        if let Some((mode, path)) = line.split_once(' ')
            && mode != "700"
        {
            bad.push(format!("{path}: {mode} (want 700)"));
        }
    }
    // One audit, the deep one (a run costs minutes under TCG): its counts
    // go to the report, and a critical finding fails the case.
    let audit = ctx
        .machine
        .execute(&as_user(ctx, "openclaw security audit --deep --json"))?
        .1;
    let (critical, warn) = audit_counts(&audit);
    ctx.notes.push(format!(
        "[{}] openclaw security audit --deep: {critical:?} critical, {warn:?} warn",
        ctx.facts.firmware
    ));
    let ok = created.0 == 0 && sessions > 0 && bad.is_empty() && critical == Some(0);
    Ok(expect(
        ok,
        format!(
            "sessions.create rc {} ({} session stores){}\n{listing}{}\naudit --deep: {critical:?} critical, {warn:?} warn",
            created.0,
            sessions,
            if created.0 == 0 {
                String::new()
            } else {
                format!(
                    ": {}",
                    ctx.secrets.redact(&crate::qemu::tail(&created.1, 6))
                )
            },
            if bad.is_empty() {
                String::new()
            } else {
                format!("\nBAD: {}", bad.join("; "))
            }
        ),
    ))
}

/// Critical and warn counts from `openclaw security audit --json`.
/// OpenClaw's own `security audit --deep --json`, as a report note (SRV-5
/// runs it when the gateway is up; this is for runs where it is not).
pub fn audit_note(ctx: &mut Ctx<'_>) -> Result<()> {
    let out = ctx.machine.run(&as_user(
        ctx,
        "timeout 300 openclaw security audit --deep --json",
    ))?;
    let (critical, warn) = audit_counts(&out.stdout_text());
    let note = match (critical, warn) {
        (Some(c), w) => format!("{c} critical, {w:?} warn"),
        _ => format!(
            "no result (exit {}): {}",
            out.status,
            out.stderr_text()
                .lines()
                .filter(|l| !l.trim().is_empty())
                .take(3)
                .collect::<Vec<_>>()
                .join(" | ")
        ),
    };
    ctx.notes.push(format!(
        "[{}] openclaw security audit --deep (gateway down): {note}",
        ctx.facts.firmware
    ));
    Ok(())
}

fn audit_counts(text: &str) -> (Option<u64>, Option<u64>) {
    let start = text.find('{').unwrap_or(0);
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text[start..]) else {
        return (None, None);
    };
    let summary = v.get("summary").unwrap_or(&v);
    let get = |k: &str| summary.get(k).and_then(serde_json::Value::as_u64);
    (get("critical"), get("warn").or_else(|| get("warning")))
}

/// SRV-6: sysctls, and an active root-owned 600 swap file made at first boot.
pub fn srv_6(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    let watches = ctx
        .machine
        .succeed("sysctl -n fs.inotify.max_user_watches")?;
    let swappiness = ctx.machine.succeed("sysctl -n vm.swappiness")?;
    let swaps = ctx.machine.succeed("swapon --show=NAME --noheadings")?;
    let file = ctx.machine.execute("stat -c '%a %U' /swapfile")?.1;
    let ok = watches.trim() == "524288"
        && swappiness.trim() == "1"
        && swaps.lines().any(|l| l.trim() == "/swapfile")
        && file.trim() == "600 root";
    Ok(expect(
        ok,
        format!(
            "max_user_watches {}; swappiness {}; swaps [{}]; /swapfile {}",
            watches.trim(),
            swappiness.trim(),
            swaps.trim(),
            file.trim()
        ),
    ))
}

/// The highest `systemd-analyze security` exposure SRV-7 accepts.
const MAX_EXPOSURE: f64 = 5.0;

/// SRV-7: the gateway unit's sandboxing as systemd applies it, and its
/// exposure score (in the report), at most [`MAX_EXPOSURE`].
pub fn srv_7(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    let props = ctx.machine.succeed(&format!(
        "systemctl show {GATEWAY_UNIT} -p NoNewPrivileges -p ProtectSystem -p ProtectHome -p PrivateTmp \
         -p PrivateDevices -p ProtectKernelTunables -p ProtectKernelModules -p ProtectKernelLogs \
         -p RestrictNamespaces -p SystemCallFilter -p CapabilityBoundingSet -p UMask"
    ))?;
    let (_, analysis) = ctx.machine.execute(&format!(
        "systemd-analyze security {GATEWAY_UNIT} --no-pager 2>&1 | tail -n1"
    ))?;
    let score = exposure(&analysis);
    ctx.notes.push(format!(
        "[{}] systemd-analyze security {GATEWAY_UNIT}: {}",
        ctx.facts.firmware,
        analysis.trim()
    ));
    let missing = missing_hardening(&props);
    let ok = missing.is_empty() && score.is_some_and(|s| s <= MAX_EXPOSURE);
    Ok(expect(
        ok,
        format!(
            "exposure {} (at most {MAX_EXPOSURE}); missing: {missing:?}; {}",
            score.map_or_else(
                || format!("unreadable ({})", analysis.trim()),
                |s| format!("{s:.1}")
            ),
            props.split_whitespace().collect::<Vec<_>>().join(" ")
        ),
    ))
}

/// The score of `systemd-analyze security`'s last line
/// (`→ Overall exposure level for x.service: 1.4 OK 🙂`).
fn exposure(line: &str) -> Option<f64> {
    let rest = line.rsplit_once(": ")?.1;
    rest.split_whitespace().next()?.parse().ok()
}

/// Whether a `systemctl show` value is what SRV-7 asks.
type ValueTest = fn(&str) -> bool;

/// The directives SRV-7 requires that `systemctl show` does not show set.
fn missing_hardening(props: &str) -> Vec<&'static str> {
    let has = |key: &str, ok: ValueTest| {
        props
            .lines()
            .filter_map(|l| l.split_once('='))
            .any(|(k, v)| k == key && ok(v.trim()))
    };
    let yes: ValueTest = |v| v == "yes";
    let mut missing = Vec::new();
    for key in [
        "NoNewPrivileges",
        "PrivateTmp",
        "PrivateDevices",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
    ] {
        if !has(key, yes) {
            missing.push(key);
        }
    }
    let checks: [(&'static str, ValueTest); 6] = [
        ("ProtectSystem", |v| v == "strict"),
        ("ProtectHome", |v| {
            v == "tmpfs" || v == "yes" || v == "read-only"
        }),
        // Every namespace type refused: systemd shows the empty allow list.
        ("RestrictNamespaces", |v| v == "yes" || v.is_empty()),
        ("SystemCallFilter", |v| !v.is_empty()),
        ("CapabilityBoundingSet", |v| v.is_empty()),
        ("UMask", |v| v == "0077"),
    ];
    for (key, ok) in checks {
        if !has(key, ok) {
            missing.push(key);
        }
    }
    missing
}

/// SSH-1: `sshd -T` is hardened when the spec turns OpenSSH on. When it
/// is off, not applicable, once the guest confirms it: no `sshd`, nothing
/// on :22 (either would fail: the image is not what its spec says).
pub fn ssh_1(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    if !ctx.facts.openssh {
        return openssh_off(ctx);
    }
    let t = ctx.machine.succeed("sshd -T")?;
    let ok = t.contains("passwordauthentication no")
        && t.contains("kbdinteractiveauthentication no")
        && t.contains("permitrootlogin no");
    Ok(expect(
        ok,
        t.lines()
            .filter(|l| l.contains("authentication") || l.contains("permitroot"))
            .collect::<Vec<_>>()
            .join("\n"),
    ))
}

/// SSH-1 and SSH-2 when the spec turns OpenSSH off: not applicable if the
/// guest has no `sshd` and nothing listens on :22; a failure otherwise.
fn openssh_off(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    let seen = ctx.machine.succeed(
        "if command -v sshd >/dev/null || test -e /usr/sbin/sshd; then echo sshd; fi; \
         ss -H -tln 'sport = :22' | wc -l",
    )?;
    Ok(judge_openssh_off(&seen))
}

/// The verdict of [`openssh_off`] from its guest output: a `sshd` line
/// when the server is installed, then the count of listeners on :22.
fn judge_openssh_off(seen: &str) -> Outcome {
    let installed = seen.lines().any(|l| l.trim() == "sshd");
    let listeners = seen.lines().last().map(str::trim).unwrap_or("?");
    if installed || listeners != "0" {
        Outcome::Fail(format!(
            "features.openssh is off ({OPENSSH_PACKAGE} not in the manifest's host packages) \
             but the guest has sshd installed: {installed}; listeners on :22: {listeners}"
        ))
    } else {
        Outcome::NotApplicable(format!(
            "features.openssh is off: {OPENSSH_PACKAGE} not in the manifest's host packages; \
             the guest confirms no sshd and 0 listeners on :22 (SEC-1 proves the image ships \
             no host key)"
        ))
    }
}

/// SSH-2: with OpenSSH on, host keys exist and were all made after first
/// boot began (none shipped: SEC-1 reads the image itself). Not applicable
/// when the spec turns OpenSSH off.
pub fn ssh_2(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    if !ctx.facts.openssh {
        return openssh_off(ctx);
    }
    let keys = ctx
        .machine
        .succeed("{ find /etc/ssh -maxdepth 1 -name 'ssh_host_*' 2>/dev/null || true; } | wc -l")?;
    let newer = ctx.machine.succeed(
        "find /etc/ssh -name 'ssh_host_*' ! -newer /var/lib/openclaw-appliance/firstboot.state | wc -l",
    )?;
    Ok(expect(
        keys.trim() != "0" && newer.trim() == "0",
        format!(
            "{} host keys, {} older than first boot",
            keys.trim(),
            newer.trim()
        ),
    ))
}

/// BOOT-1: the system reached its target with no failed unit.
pub fn boot_1(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    let state = ctx.machine.execute("systemctl is-system-running --wait")?.1;
    let failed = ctx
        .machine
        .succeed("systemctl list-units --failed --no-legend --plain")?;
    let multi = ctx
        .machine
        .succeed("systemctl is-active multi-user.target")?;
    // The sandbox daemon's account has the only user manager.
    let user_failed = ctx.machine.succeed(
        "runuser -u sandboxd -- env XDG_RUNTIME_DIR=/run/user/$(id -u sandboxd) \
         systemctl --user list-units --failed --no-legend --plain 2>&1 || true",
    )?;
    let ok = state.trim() == "running"
        && failed.trim().is_empty()
        && user_failed.trim().is_empty()
        && multi.trim() == "active";
    Ok(expect(
        ok,
        format!(
            "firmware {}: system {}; multi-user.target {}; failed: [{}]; failed units of sandboxd's manager: [{}]",
            ctx.facts.firmware,
            state.trim(),
            multi.trim(),
            failed.trim(),
            user_failed.trim()
        ),
    ))
}

/// BOOT-2: the root filesystem filled the larger virtual disk at first boot.
pub fn boot_2(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    let disk = ctx
        .machine
        .succeed("lsblk -bndo SIZE \"$(lsblk -npo PKNAME \"$(findmnt -no SOURCE /)\")\"")?;
    let root = ctx.machine.succeed("df -B1 --output=size / | tail -n1")?;
    let image = ctx.facts.manifest_disk_bytes();
    let (disk, root) = (
        disk.trim().parse::<u64>().unwrap_or(0),
        root.trim().parse::<u64>().unwrap_or(0),
    );
    if disk <= image {
        return Ok(Outcome::NotRun(format!(
            "the test disk ({disk} B) is not larger than the image ({image} B)"
        )));
    }
    // Grown: the filesystem is larger than the whole original image.
    Ok(expect(
        root > image,
        format!("disk {disk} B, image {image} B, root filesystem {root} B"),
    ))
}

#[cfg(test)]
mod tests {
    use super::{exposure, judge_openssh_off, judge_srv3, missing_hardening};
    use crate::suite::report::Outcome;

    #[test]
    fn exposure_is_read_from_the_last_line() {
        assert_eq!(
            exposure("→ Overall exposure level for openclaw-gateway.service: 1.4 OK 🙂"),
            Some(1.4)
        );
        assert_eq!(
            exposure("→ Overall exposure level for x.service: 8.9 EXPOSED 🙁\n"),
            Some(8.9)
        );
        assert_eq!(exposure("Unit x.service not found."), None);
    }

    #[test]
    fn every_required_directive_is_named_when_missing() {
        let full = "NoNewPrivileges=yes\nProtectSystem=strict\nProtectHome=tmpfs\nPrivateTmp=yes\n\
                    PrivateDevices=yes\nProtectKernelTunables=yes\nProtectKernelModules=yes\n\
                    ProtectKernelLogs=yes\nRestrictNamespaces=yes\n\
                    SystemCallFilter=_llseek accept\nCapabilityBoundingSet=\nUMask=0077\n";
        assert!(
            missing_hardening(full).is_empty(),
            "{:?}",
            missing_hardening(full)
        );
        let weak = full
            .replace("ProtectSystem=strict", "ProtectSystem=no")
            .replace(
                "CapabilityBoundingSet=\n",
                "CapabilityBoundingSet=cap_chown\n",
            )
            .replace("NoNewPrivileges=yes", "NoNewPrivileges=no");
        assert_eq!(
            missing_hardening(&weak),
            vec!["NoNewPrivileges", "ProtectSystem", "CapabilityBoundingSet"]
        );
    }

    #[test]
    fn srv_3_fails_on_a_working_sudo_a_root_group_or_a_sudoers_line() {
        let refused = "sudo: a password is required";
        assert!(judge_srv3(1, refused, "openclaw sandbox", "").0);
        assert!(judge_srv3(127, "sudo: command not found", "openclaw", "").0);
        for (status, groups, sudoers) in [
            (0, "openclaw", ""),
            (1, "openclaw docker", ""),
            (1, "openclaw sudo", ""),
            (
                1,
                "openclaw",
                "/etc/sudoers.d/x:openclaw ALL=(ALL) NOPASSWD: ALL",
            ),
        ] {
            let (ok, seen) = judge_srv3(status, refused, groups, sudoers);
            assert!(!ok, "{status} {groups:?} {sudoers:?} passed: {seen}");
        }
        let (_, seen) = judge_srv3(1, refused, "openclaw", "x");
        assert!(seen.contains("weaker proof"), "{seen}");
    }

    #[test]
    fn openssh_off_is_not_applicable_only_when_the_guest_agrees() {
        assert!(matches!(
            judge_openssh_off("0\n"),
            Outcome::NotApplicable(ref why) if why.contains("features.openssh is off")
        ));
        for bad in ["sshd\n0\n", "1\n", "sshd\n1\n", ""] {
            assert!(
                matches!(judge_openssh_off(bad), Outcome::Fail(_)),
                "{bad:?}"
            );
        }
    }
}
