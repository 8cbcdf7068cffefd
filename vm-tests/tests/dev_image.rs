//! Boots a development image and exercises the whole harness.
//!
//! Slow (about two minutes under TCG), so ignored by default: run with
//! `VMTEST_DEV_IMAGE=/path/to/disk.img cargo test -p vm-tests --test
//! dev_image -- --ignored`; each test fails, saying so, without
//! `VMTEST_DEV_IMAGE`.
//!
//! - `VMTEST_DEV_IMAGE`: the raw image (left byte-identical, checked).
//! - `VMTEST_DEV_KERNEL`, `VMTEST_DEV_INITRD`: direct kernel boot for an
//!   image without a boot loader (a bare ext4 root: `root=/dev/vda`);
//!   without them the image boots through its firmware and boot loader.
//! - `VMTEST_DEV_CMDLINE`: kernel command line (default
//!   `root=/dev/vda rw console=ttyS0`).
//!
//! Logs and overlays stay under `target/tmp/vm-tests-dev/<test>/`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hostutil::sha256_file;
use sha2::{Digest, Sha256};
use vm_tests::{DirectKernel, Firmware, Machine, MachineConfig};

fn dev_config(test: &str) -> Result<MachineConfig> {
    let image = std::env::var_os("VMTEST_DEV_IMAGE").context(
        "VMTEST_DEV_IMAGE is not set: set VMTEST_DEV_IMAGE=/path/to/disk.img \
         (a raw image to boot, left unchanged) to run the dev_image tests",
    )?;
    let state = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("vm-tests-dev")
        .join(test);
    let mut config = MachineConfig::new("dev", image, state);
    if let Some(kernel) = std::env::var_os("VMTEST_DEV_KERNEL") {
        config.direct_kernel = Some(DirectKernel {
            kernel: kernel.into(),
            initrd: std::env::var_os("VMTEST_DEV_INITRD").map(PathBuf::from),
            cmdline: std::env::var("VMTEST_DEV_CMDLINE")
                .unwrap_or_else(|_| "root=/dev/vda rw console=ttyS0".into()),
        });
    }
    config.deadline = Instant::now() + Duration::from_secs(900);
    Ok(config)
}

const MIN: Duration = Duration::from_secs(60);

#[test]
#[ignore = "needs VMTEST_DEV_IMAGE=<path to a raw disk image>; run with --ignored"]
fn harness_end_to_end() -> Result<()> {
    let config = dev_config("harness_end_to_end")?;
    let image = config.image.clone();
    let image_hash = sha256_file(&image)?;

    let t0 = Instant::now();
    let mut m = Machine::start(config)?;
    m.wait_for_shell(Duration::from_secs(300))?;
    let shell_ready = t0.elapsed();
    m.wait_for_unit("multi-user.target", None, 5 * MIN)?;
    let multi_user = t0.elapsed();
    m.wait_for_console_text("login:", MIN)?;
    eprintln!(
        "TIMING accel={} shell-ready={:.1}s multi-user={:.1}s",
        m.accel().accel,
        shell_ready.as_secs_f64(),
        multi_user.as_secs_f64()
    );

    // Per-command latency.
    let t = Instant::now();
    for _ in 0..10 {
        m.succeed("true")?;
    }
    eprintln!(
        "TIMING per-command={:.0}ms",
        t.elapsed().as_secs_f64() * 100.0
    );

    // The channel's unit came from the credentials, for this boot only.
    let fragment =
        m.succeed("systemctl show --property=FragmentPath --value vmtest-shell.service")?;
    assert_eq!(
        fragment,
        "/run/systemd/generator.early/vmtest-shell.service\n"
    );
    m.fail("ls /etc/systemd/system /usr/lib/systemd/system | grep -q vmtest")?;

    let kernel = m.succeed("uname -r")?;
    assert!(
        kernel.ends_with('\n') && kernel.trim().contains("amd64"),
        "{kernel:?}"
    );
    let out = m.fail("false")?;
    assert_eq!(out, "");

    // succeed's error names the command, the status and the output.
    let err = format!(
        "{:#}",
        m.succeed("echo to-stdout; echo to-stderr >&2; exit 3")
            .unwrap_err()
    );
    for part in [
        "exit status 3",
        "to-stdout",
        "to-stderr",
        "echo to-stdout",
        "dev_image.rs",
    ] {
        assert!(err.contains(part), "{part:?} missing in: {err}");
    }
    // fail's error when the command succeeds.
    assert!(m.fail("true").is_err());

    // Exact bytes: NUL, 0xff, CR, blank lines, a fake marker, no final newline.
    let expected: &[u8] = b"\0\x01\xff\r\n\n@@vmtest@@ end 1-1 0\n\ttab  spaces \\ no newline";
    let out =
        m.run(r"printf '\000\001\377\r\n\n@@vmtest@@ end 1-1 0\n\ttab  spaces \\ no newline'")?;
    assert_eq!(out.status, 0);
    assert_eq!(out.stdout, expected);
    m.copy_to_vm("/run/vmtest-bytes", expected)?;
    assert_eq!(m.copy_from_vm("/run/vmtest-bytes")?, expected);

    // A bigger transfer: 4 MiB of random bytes, checked against the guest's sha256.
    m.succeed("head -c 4194304 /dev/urandom > /run/vmtest-big")?;
    let guest_sum = m.succeed("sha256sum /run/vmtest-big | cut -d' ' -f1")?;
    let t = Instant::now();
    let big = m.copy_from_vm("/run/vmtest-big")?;
    eprintln!("TIMING copy_from_vm 4MiB={:.1}s", t.elapsed().as_secs_f64());
    assert_eq!(big.len(), 4 << 20);
    assert_eq!(format!("{:x}\n", Sha256::digest(&big)), guest_sum);

    // The guest-side timeout ends a hung command.
    let t = Instant::now();
    let out = m.run_timeout("sleep 60", Duration::from_secs(2))?;
    assert_eq!(out.status, 124);
    assert!(t.elapsed() < Duration::from_secs(15));
    m.succeed("true")?;

    let os_release = String::from_utf8(m.copy_from_vm("/etc/os-release")?)?;
    assert!(
        os_release.contains("VERSION_CODENAME=trixie"),
        "{os_release}"
    );
    assert!(m.copy_from_vm("/does/not/exist").is_err());

    // A unit that fails is reported at once, not after the timeout.
    m.succeed(
        "printf '[Service]\\nExecStart=/bin/false\\n' > /run/systemd/system/vmtest-broken.service; \
         systemctl daemon-reload; systemctl start --no-block vmtest-broken.service",
    )?;
    let t = Instant::now();
    let err = format!(
        "{:#}",
        m.wait_for_unit("vmtest-broken.service", None, 5 * MIN)
            .unwrap_err()
    );
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t.elapsed()
    );
    assert!(err.contains("failed"), "{err}");
    assert!(err.contains("systemctl status"), "{err}");
    // A unit that nothing will start is reported at once too.
    let t = Instant::now();
    assert!(
        m.wait_for_unit("vmtest-nonexistent.service", None, 5 * MIN)
            .is_err()
    );
    assert!(t.elapsed() < Duration::from_secs(30));

    // A listening port (a socket unit: no server program needed).
    m.succeed(
        "printf '[Socket]\\nListenStream=127.0.0.1:18789\\nAccept=yes\\n' > /run/systemd/system/vmtest-port.socket; \
         printf '[Service]\\nExecStart=/bin/true\\nStandardInput=socket\\n' > /run/systemd/system/vmtest-port@.service; \
         systemctl daemon-reload; systemctl start vmtest-port.socket",
    )?;
    m.wait_for_open_port(18789, MIN)?;
    assert!(m.wait_for_open_port(18790, Duration::from_secs(3)).is_err());

    // A user unit, through the user's own systemd instance (linger).
    m.succeed("useradd -m -u 1000 tester && loginctl enable-linger tester")?;
    m.wait_for_unit("default.target", Some("tester"), 2 * MIN)?;
    m.wait_until_succeeds("test -S /run/user/1000/systemd/private", MIN)?;

    // Power cut, then a fresh boot of the same overlay keeps synced data.
    m.succeed("echo survived > /var/lib/vmtest-marker && sync")?;
    m.crash()?;
    assert!(!m.is_running());
    let t = Instant::now();
    m.power_on()?;
    m.wait_for_unit("multi-user.target", None, 5 * MIN)?;
    eprintln!(
        "TIMING second boot to multi-user={:.1}s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(m.succeed("cat /var/lib/vmtest-marker")?, "survived\n");
    assert_eq!(m.boot_count(), 2);

    // Clean power-off through the ACPI power button.
    let t = Instant::now();
    m.shutdown()?;
    eprintln!("TIMING shutdown={:.1}s", t.elapsed().as_secs_f64());
    assert!(!m.is_running());
    let serial = std::fs::read_to_string(m.serial_log_path())?;
    assert!(
        serial.contains("reboot: Power down"),
        "no power-down on the console"
    );

    assert_eq!(sha256_file(&image)?, image_hash, "the tested image changed");
    Ok(())
}

#[test]
#[ignore = "needs VMTEST_DEV_IMAGE=<path to a raw disk image>; run with --ignored"]
fn uefi_boot() -> Result<()> {
    let mut config = dev_config("uefi_boot")?;
    config.firmware = Firmware::Uefi;
    let mut m = Machine::start(config)?;
    m.wait_for_unit("multi-user.target", None, 5 * MIN)?;
    m.succeed("test -d /sys/firmware/efi")?;
    m.reboot()?;
    m.succeed("test -d /sys/firmware/efi")?;
    m.shutdown()?;
    Ok(())
}

/// The whole-disk path: no direct kernel, the firmware boots from the
/// overlay (a bare ext4 image has no boot loader, so this stops at the
/// firmware's boot attempt; a real image would go on booting).
#[test]
#[ignore = "needs VMTEST_DEV_IMAGE=<path to a raw disk image>; run with --ignored"]
fn firmware_boots_from_the_disk() -> Result<()> {
    for (firmware, text) in [
        (Firmware::Bios, "Booting from Hard Disk"),
        (Firmware::Uefi, "Boot0001 \"UEFI Misc Device\""),
    ] {
        let mut config = dev_config(&format!("firmware_boots_from_the_disk_{firmware}"))?;
        config.name = format!("disk-{firmware}");
        config.firmware = firmware;
        config.direct_kernel = None;
        let mut m = Machine::start(config)?;
        m.wait_for_console_text(text, MIN)?;
        m.crash()?;
    }
    Ok(())
}

/// A guest that stops answering (here: paused over QMP) fails the command
/// that waited for it, then every later command at once, naming the stall;
/// a new boot starts over.
#[test]
#[ignore = "needs VMTEST_DEV_IMAGE=<path to a raw disk image>; run with --ignored"]
fn a_stalled_guest_fails_fast() -> Result<()> {
    let config = dev_config("a_stalled_guest_fails_fast")?;
    let mut m = Machine::start(config)?;
    m.wait_for_shell(5 * MIN)?;
    m.succeed("true")?;
    assert!(m.stalled().is_none());
    m.pause()?;
    let err = m
        .run_timeout("echo never", Duration::from_secs(5))
        .expect_err("a paused guest cannot answer");
    assert!(
        format!("{err:#}").contains("stopped answering"),
        "the error names the stall: {err:#}"
    );
    assert!(m.stalled().is_some());
    let t = Instant::now();
    let again = m.run("true").expect_err("a stalled boot refuses commands");
    assert!(t.elapsed() < Duration::from_secs(1), "no second wait");
    assert!(format!("{again:#}").contains("stopped answering"));
    m.resume()?;
    m.crash()?;
    m.power_on()?;
    m.succeed("true")?;
    assert!(m.stalled().is_none(), "a new boot is not stalled");
    m.crash()?;
    Ok(())
}
