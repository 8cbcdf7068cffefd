//! Chooses QEMU's accelerator: KVM where it really works, TCG otherwise.
//!
//! `/dev/kvm` existing is not enough. A paravirtual KVM (`kvm_pvm`, found on
//! some cloud hosts) exposes `/dev/kvm` and creates VMs, but stock firmware
//! and Debian kernels hang or stop with "KVM internal error … emulation
//! failure" under it. The probe therefore asks three questions, cheapest
//! first:
//!
//! 1. Can `/dev/kvm` be opened read-write?
//! 2. Does the CPU advertise hardware virtualization (`vmx` or `svm` in
//!    `/proc/cpuinfo`)? A paravirtual KVM runs without either.
//! 3. Does a real QEMU run under `-accel kvm`? On an empty machine, SeaBIOS
//!    must print "No bootable device" on its debug port, and OVMF (when
//!    installed) "BdsDxe" on the serial console, each within a few seconds and
//!    with no KVM error from QEMU. SeaBIOS alone is not enough: under
//!    `kvm_pvm` it passes (16/32-bit code) while OVMF and Linux (64-bit) fail.
//!
//! `VMTEST_ACCEL=kvm|tcg` overrides the probe.

use std::fmt;
use std::fs::OpenOptions;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::qemu::escape_opt;

/// The environment variable that forces an accelerator (`kvm` or `tcg`).
pub const ACCEL_ENV: &str = "VMTEST_ACCEL";

/// A QEMU accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualization through `/dev/kvm`.
    Kvm,
    /// QEMU's binary translator: slower, works everywhere, same results.
    Tcg,
}

impl Accel {
    /// The name QEMU uses (`-accel <name>`).
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    /// Parses `kvm` or `tcg` (case-insensitive).
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "kvm" => Ok(Accel::Kvm),
            "tcg" => Ok(Accel::Tcg),
            other => bail!("unknown accelerator {other:?}: expected `kvm` or `tcg`"),
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The chosen accelerator and why it was chosen (for the report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccelChoice {
    /// The accelerator to use.
    pub accel: Accel,
    /// A one-line reason, e.g. "no vmx/svm CPU flag (paravirtual KVM: kvm_pvm)".
    pub reason: String,
}

/// How long the live KVM probe may take before KVM is declared unusable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(8);

/// Chooses the accelerator once per process (the probe costs about a second)
/// and returns the cached choice afterwards.
///
/// Fails only on an invalid `VMTEST_ACCEL` value.
pub fn choose(qemu: &Path) -> Result<AccelChoice> {
    if let Ok(forced) = std::env::var(ACCEL_ENV) {
        let accel = Accel::parse(&forced).with_context(|| format!("reading ${ACCEL_ENV}"))?;
        return Ok(AccelChoice {
            accel,
            reason: format!("forced by {ACCEL_ENV}={forced}"),
        });
    }
    static CHOICE: OnceLock<AccelChoice> = OnceLock::new();
    Ok(CHOICE.get_or_init(|| probe(qemu)).clone())
}

/// Runs the probe without caching and without looking at `VMTEST_ACCEL`.
pub fn probe(qemu: &Path) -> AccelChoice {
    let tcg = |reason: String| AccelChoice {
        accel: Accel::Tcg,
        reason,
    };
    if let Err(e) = OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        return tcg(format!("cannot open /dev/kvm read-write: {e}"));
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    if !cpu_has_virtualization(&cpuinfo) {
        let pvm = if Path::new("/sys/module/kvm_pvm").exists() {
            " (paravirtual KVM: kvm_pvm)"
        } else {
            ""
        };
        return tcg(format!(
            "/dev/kvm exists but the CPU has no vmx/svm flag{pvm}; stock firmware and kernels fail under it"
        ));
    }
    match live_probe(qemu) {
        Ok(took) => AccelChoice {
            accel: Accel::Kvm,
            reason: format!(
                "KVM works: SeaBIOS and OVMF ran under -accel kvm in {:.2}s",
                took.as_secs_f64()
            ),
        },
        Err(e) => tcg(format!("KVM probe failed: {e:#}")),
    }
}

/// Whether `/proc/cpuinfo` text lists the `vmx` (Intel) or `svm` (AMD) flag.
pub fn cpu_has_virtualization(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .filter_map(|l| l.split_once(':'))
        .any(|(_, flags)| flags.split_whitespace().any(|f| f == "vmx" || f == "svm"))
}

/// The text SeaBIOS prints on its debug port when it has tried every boot
/// device: proof that the firmware ran to the end under the accelerator.
const SEABIOS_DONE: &str = "No bootable device";

/// The text OVMF prints on the serial console when it reaches the boot
/// device selection: its 64-bit DXE phase ran.
const OVMF_DONE: &str = "BdsDxe";

/// Runs SeaBIOS, then (if installed) OVMF, under KVM on an empty machine.
/// OVMF matters: it runs 64-bit long-mode code with paging, which is where
/// a paravirtual KVM fails while SeaBIOS still passes.
fn live_probe(qemu: &Path) -> Result<Duration> {
    let dir = tempfile::Builder::new()
        .prefix("vmtest-kvm-probe-")
        .tempdir()
        .context("creating a temporary directory for the KVM probe")?;
    let start = Instant::now();
    let out = dir.path().join("seabios.log");
    let mut args: Vec<String> = ["-serial", "none", "-chardev"].map(String::from).to_vec();
    args.push(format!(
        "file,id=dbg,path={}",
        escape_opt(&out.to_string_lossy())
    ));
    args.extend(["-device", "isa-debugcon,iobase=0x402,chardev=dbg"].map(String::from));
    run_probe(qemu, dir.path(), "SeaBIOS", &args, &out, SEABIOS_DONE)?;
    if let Ok(ovmf) = crate::firmware::find_ovmf() {
        let vars = dir.path().join("OVMF_VARS.fd");
        crate::firmware::prepare_vars(&ovmf, &vars)?;
        let out = dir.path().join("ovmf.log");
        let args = vec![
            "-serial".to_string(),
            format!("file:{}", out.display()),
            "-drive".to_string(),
            format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={}",
                escape_opt(&ovmf.code.to_string_lossy())
            ),
            "-drive".to_string(),
            format!(
                "if=pflash,format=raw,unit=1,file={}",
                escape_opt(&vars.to_string_lossy())
            ),
        ];
        run_probe(qemu, dir.path(), "OVMF", &args, &out, OVMF_DONE)?;
    }
    Ok(start.elapsed())
}

/// Starts QEMU under KVM with `args` and waits for `done` in `output`.
fn run_probe(
    qemu: &Path,
    dir: &Path,
    what: &str,
    args: &[String],
    output: &Path,
    done: &str,
) -> Result<()> {
    let stderr_path = dir.join(format!("{what}-qemu.log"));
    let stderr = std::fs::File::create(&stderr_path)
        .with_context(|| format!("creating {}", stderr_path.display()))?;
    let start = Instant::now();
    let mut child = Command::new(qemu)
        .args([
            "-accel", "kvm", "-cpu", "host", "-machine", "q35", "-m", "128",
        ])
        .args([
            "-nodefaults",
            "-nographic",
            "-no-reboot",
            "-monitor",
            "none",
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("starting {}", qemu.display()))?;
    let outcome = loop {
        let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        if log.contains("KVM internal error") || log.contains("emulation failure") {
            break Err(anyhow::anyhow!("{what} under KVM: {}", first_line(&log)));
        }
        if let Ok(Some(status)) = child.try_wait() {
            break Err(anyhow::anyhow!(
                "QEMU exited ({status}): {}",
                first_line(&log)
            ));
        }
        let out = std::fs::read(output).unwrap_or_default();
        if String::from_utf8_lossy(&out).contains(done) {
            break Ok(());
        }
        if start.elapsed() > PROBE_TIMEOUT {
            break Err(anyhow::anyhow!(
                "{what} did not get to {done:?} within {}s under KVM (hung guest)",
                PROBE_TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    outcome
}

fn first_line(s: &str) -> &str {
    s.lines()
        .find(|l| !l.contains("warning:"))
        .or_else(|| s.lines().next())
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_flags() {
        let check = |text: &str, expected: bool| assert_eq!(cpu_has_virtualization(text), expected);
        check("flags\t\t: fpu vme de pse vmx sse\n", true);
        check("flags\t\t: fpu svm\n", true);
        check("flags\t\t: fpu hypervisor sse\n", false);
        check("model name\t: vmx-like cpu\nflags\t: fpu\n", false);
        check("", false);
    }

    #[test]
    fn parse_accel() {
        assert_eq!(Accel::parse("KVM").unwrap(), Accel::Kvm);
        assert_eq!(Accel::parse("tcg\n").unwrap(), Accel::Tcg);
        assert!(Accel::parse("hvf").is_err());
    }
}
