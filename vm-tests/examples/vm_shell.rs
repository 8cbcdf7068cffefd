//! Boots an image and runs commands typed on stdin, one per line, through
//! the harness's command channel: a quick way to poke at a guest.
//!
//! ```text
//! VMTEST_DEV_KERNEL=… VMTEST_DEV_INITRD=… \
//!   cargo run -p vm-tests --example vm_shell -- <image> [<state dir>] [uefi]
//! ```
//!
//! `VM_SHELL_QEMU_ARGS` adds QEMU arguments (split at whitespace).
//!
//! Type `:crash`, `:boot`, `:shutdown` or `:console <text>` for the power
//! verbs; end with Ctrl-D (kills QEMU).

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use vm_tests::{DirectKernel, Firmware, Machine, MachineConfig};

fn main() -> Result<()> {
    let mut args = std::env::args_os().skip(1);
    let image = PathBuf::from(
        args.next()
            .context("usage: vm_shell <image> [<state dir>] [uefi]")?,
    );
    let state = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/vm_shell"));
    let mut config = MachineConfig::new("shell", image, state);
    if args.next().is_some_and(|a| a == "uefi") {
        config.firmware = Firmware::Uefi;
    }
    if let Ok(extra) = std::env::var("VM_SHELL_QEMU_ARGS") {
        config.extra_args = extra.split_whitespace().map(Into::into).collect();
    }
    if let Some(kernel) = std::env::var_os("VMTEST_DEV_KERNEL") {
        config.direct_kernel = Some(DirectKernel {
            kernel: kernel.into(),
            initrd: std::env::var_os("VMTEST_DEV_INITRD").map(PathBuf::from),
            cmdline: "root=/dev/vda rw console=ttyS0".into(),
        });
    }
    let mut machine = Machine::start(config)?;
    for line in std::io::stdin().lock().lines() {
        let line = line.context("reading stdin")?;
        let result = match line.split_once(' ').unwrap_or((line.as_str(), "")) {
            (":crash", _) => machine.crash(),
            (":boot", _) => machine.power_on(),
            (":shutdown", _) => machine.shutdown(),
            (":console", text) => machine.wait_for_console_text(text, Duration::from_secs(300)),
            _ => machine.run(&line).map(|out| {
                let mut stdout = std::io::stdout().lock();
                let _ = stdout.write_all(&out.stdout);
                let _ = std::io::stderr().write_all(&out.stderr);
                let _ = writeln!(stdout, "[exit {}]", out.status);
            }),
        };
        if let Err(e) = result {
            eprintln!("error: {e:#}");
        }
    }
    Ok(())
}
