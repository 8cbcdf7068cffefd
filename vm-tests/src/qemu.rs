//! Launching QEMU: the argv (a pure function of the launch description), the
//! copy-on-write overlay, and the process with its global-deadline watchdog.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::accel::Accel;
use crate::log::Log;
use hostutil::{SBIN_DIRS, die_with_parent, which};

/// The QEMU binary, found on `PATH` unless `VMTEST_QEMU` names another.
pub fn qemu_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("VMTEST_QEMU") {
        return Ok(PathBuf::from(p));
    }
    which("qemu-system-x86_64", SBIN_DIRS).context(
        "`qemu-system-x86_64` not found on PATH: install `qemu-system-x86` (run `cargo xtask doctor`)",
    )
}

/// `qemu-img`, found on `PATH`.
pub fn qemu_img_binary() -> Result<PathBuf> {
    which("qemu-img", SBIN_DIRS)
        .context("`qemu-img` not found on PATH: install `qemu-utils` (run `cargo xtask doctor`)")
}

/// Escapes a value for QEMU's `key=value,…` option syntax (commas doubled).
pub fn escape_opt(value: &str) -> String {
    value.replace(',', ",,")
}

/// `prefix` + `path` (commas doubled) + `suffix`, byte-exact for any path.
fn opt_path(prefix: &str, path: &Path, suffix: &str) -> OsString {
    let mut bytes = prefix.as_bytes().to_vec();
    for &b in path.as_os_str().as_bytes() {
        bytes.push(b);
        if b == b',' {
            bytes.push(b',');
        }
    }
    bytes.extend_from_slice(suffix.as_bytes());
    OsString::from_vec(bytes)
}

/// Format of the tested image (the backing file of the overlay).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageFormat {
    /// A raw disk image (what `build-image` makes).
    #[default]
    Raw,
    /// A qcow2 image.
    Qcow2,
}

impl ImageFormat {
    /// QEMU's name for the format.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageFormat::Raw => "raw",
            ImageFormat::Qcow2 => "qcow2",
        }
    }
}

/// Boot a kernel directly (`-kernel`/`-initrd`/`-append`) instead of the
/// image's own boot loader; for development images without one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectKernel {
    /// The kernel (`vmlinuz`).
    pub kernel: PathBuf,
    /// The initramfs, if any.
    pub initrd: Option<PathBuf>,
    /// The kernel command line, e.g. `root=/dev/vda rw console=ttyS0`.
    pub cmdline: String,
}

/// Firmware files as QEMU needs them for one boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirmwareArgs {
    /// SeaBIOS: nothing to pass.
    Bios,
    /// OVMF: the read-only code and this machine's writable variable store.
    Uefi {
        /// `OVMF_CODE*.fd`.
        code: PathBuf,
        /// The machine's own copy of `OVMF_VARS*.fd`.
        vars: PathBuf,
    },
}

/// Name of the virtio-serial port of the command channel; the guest sees it
/// as `/dev/virtio-ports/<name>`.
pub const SHELL_PORT_NAME: &str = "org.openclaw.vmtest.shell";

/// QEMU's `-icount`: guest time from the number of executed instructions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icount {
    /// 2^shift ns of guest time per instruction (0: the fastest guest clock).
    pub shift: u8,
    /// `true`: when the guest idles, its clock follows host time;
    /// `false` (`sleep=off`): it jumps to the next timer deadline.
    pub sleep: bool,
}

impl Icount {
    /// Parses `N` or `N,sleep=off` (N from 0 to 10).
    pub fn parse(s: &str) -> Result<Icount> {
        let (shift, rest) = s.trim().split_once(',').unwrap_or((s.trim(), ""));
        let sleep = match rest.trim() {
            "" | "sleep=on" => true,
            "sleep=off" => false,
            other => bail!("unknown icount option {other:?}: expected `sleep=off` or `sleep=on`"),
        };
        match shift.trim().parse::<u8>() {
            Ok(shift) if shift <= 10 => Ok(Icount { shift, sleep }),
            _ => bail!(
                "icount shift {shift:?} is not valid: expected 0 to 10 (2^N ns per guest instruction)"
            ),
        }
    }
}

impl std::fmt::Display for Icount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "shift={}", self.shift)?;
        if !self.sleep {
            f.write_str(",sleep=off")?;
        }
        Ok(())
    }
}

/// Everything that decides QEMU's argv for one boot.
#[derive(Debug, Clone)]
pub struct Launch<'a> {
    /// Machine name (`-name`, log prefix).
    pub name: &'a str,
    /// Accelerator.
    pub accel: Accel,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Number of vCPUs.
    pub cpus: u32,
    /// TCG only: guest time counted in executed instructions; see
    /// [`crate::MachineConfig::icount`].
    pub icount: Option<Icount>,
    /// The qcow2 overlay the guest writes to.
    pub overlay: &'a Path,
    /// Where the serial console (ttyS0) is written.
    pub serial_log: &'a Path,
    /// The QMP unix socket (QEMU listens).
    pub qmp_socket: &'a Path,
    /// The command channel's unix socket (QEMU listens).
    pub shell_socket: &'a Path,
    /// Firmware.
    pub firmware: FirmwareArgs,
    /// Direct kernel boot, if any.
    pub direct_kernel: Option<&'a DirectKernel>,
    /// Files holding systemd credentials' SMBIOS type 11 strings (see
    /// [`crate::credential::Credential::write_smbios_file`]), the harness's own included: the
    /// values never reach QEMU's argv.
    pub credential_files: &'a [PathBuf],
    /// Appended last, verbatim (network devices, more drives, …).
    pub extra_args: &'a [OsString],
}

/// The CPU model under TCG: QEMU's default `qemu64` without CMPXCHG16B.
///
/// QEMU 7.2's TCG (Debian 12's) faulted the guest kernel in SLUB's per-CPU
/// fast path right after a `cmpxchg16b %gs:(%rsi)`, with EFLAGS no real CPU
/// can hold (double faults, a NULL-pointer oops; `vm-test` restarts such a
/// boot, see the suite's fault restarts). Without the CX16 flag the kernel
/// takes its emulated 16-byte compare-exchange instead, and nothing in the
/// appliance needs the instruction (Debian 13, Node, Go binaries target
/// baseline x86-64). Hetzner's CPUs have CX16: this is about the emulator only.
pub const TCG_CPU: &str = "qemu64,cx16=off";

/// QEMU's argv (without the binary) for `launch`.
///
/// `-nodefaults` leaves out the default NIC, CD-ROM, floppy and monitor, so
/// the machine has exactly: the overlay as a virtio disk, ttyS0 into a file,
/// QMP, a virtio RNG and the command channel's virtio-serial port — plus
/// whatever `extra_args` add (a NIC, say).
pub fn qemu_argv(launch: &Launch<'_>) -> Vec<OsString> {
    let mut argv: Vec<OsString> = Vec::new();
    let mut push = |args: &[&str]| argv.extend(args.iter().map(OsString::from));
    push(&["-name", &escape_opt(launch.name)]);
    push(&["-machine", "q35", "-accel", launch.accel.as_str()]);
    match launch.accel {
        Accel::Kvm => push(&["-cpu", "host"]),
        // TCG's default model without CMPXCHG16B: see TCG_CPU.
        Accel::Tcg => push(&["-cpu", TCG_CPU]),
    }
    if let (Accel::Tcg, Some(icount)) = (launch.accel, launch.icount) {
        push(&["-icount", &icount.to_string()]);
    }
    push(&["-m", &launch.memory_mib.to_string()]);
    push(&["-smp", &launch.cpus.to_string()]);
    push(&[
        "-nodefaults",
        "-nographic",
        "-no-reboot",
        "-monitor",
        "none",
    ]);
    argv.push("-chardev".into());
    argv.push(opt_path("file,id=serial0,path=", launch.serial_log, ""));
    argv.extend(["-serial", "chardev:serial0"].map(OsString::from));
    argv.push("-chardev".into());
    argv.push(opt_path(
        "socket,id=qmp,path=",
        launch.qmp_socket,
        ",server=on,wait=off",
    ));
    argv.extend(["-mon", "chardev=qmp,mode=control"].map(OsString::from));
    if let FirmwareArgs::Uefi { code, vars } = &launch.firmware {
        argv.push("-drive".into());
        argv.push(opt_path(
            "if=pflash,format=raw,unit=0,readonly=on,file=",
            code,
            "",
        ));
        argv.push("-drive".into());
        argv.push(opt_path("if=pflash,format=raw,unit=1,file=", vars, ""));
    }
    argv.push("-drive".into());
    argv.push(opt_path(
        "file=",
        launch.overlay,
        ",format=qcow2,if=none,id=disk0,discard=unmap",
    ));
    argv.extend(["-device", "virtio-blk-pci,drive=disk0,bootindex=1"].map(OsString::from));
    if let Some(k) = launch.direct_kernel {
        argv.push("-kernel".into());
        argv.push(k.kernel.clone().into_os_string());
        if let Some(initrd) = &k.initrd {
            argv.push("-initrd".into());
            argv.push(initrd.clone().into_os_string());
        }
        argv.push("-append".into());
        argv.push(k.cmdline.clone().into());
    }
    for file in launch.credential_files {
        argv.push("-smbios".into());
        argv.push(opt_path("type=11,path=", file, ""));
    }
    argv.extend(["-device", "virtio-rng-pci"].map(OsString::from));
    argv.extend(["-device", "virtio-serial-pci,id=vmtest-serial"].map(OsString::from));
    argv.push("-chardev".into());
    argv.push(opt_path(
        "socket,id=vmtest-shell,path=",
        launch.shell_socket,
        ",server=on,wait=off",
    ));
    argv.push("-device".into());
    argv.push(
        format!("virtserialport,bus=vmtest-serial.0,chardev=vmtest-shell,name={SHELL_PORT_NAME}")
            .into(),
    );
    argv.extend(launch.extra_args.iter().cloned());
    argv
}

/// Creates the qcow2 overlay `overlay` backed by `image`, so the guest's
/// writes never reach the tested image. Replaces an existing overlay.
/// `size_mib`, when given, makes the overlay's virtual disk larger than the
/// image (a bigger disk, as on Hetzner: BOOT-2).
pub fn create_overlay(
    image: &Path,
    format: ImageFormat,
    overlay: &Path,
    size_mib: Option<u64>,
) -> Result<()> {
    let image = image
        .canonicalize()
        .with_context(|| format!("image {} not found", image.display()))?;
    if overlay.exists() {
        std::fs::remove_file(overlay)
            .with_context(|| format!("removing old overlay {}", overlay.display()))?;
    }
    let qemu_img = qemu_img_binary()?;
    let out = Command::new(&qemu_img)
        .args(["create", "-q", "-f", "qcow2", "-F", format.as_str(), "-b"])
        .arg(&image)
        .arg(overlay)
        .args(size_mib.map(|m| format!("{m}M")))
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", qemu_img.display()))?;
    if !out.status.success() {
        bail!(
            "`qemu-img create -f qcow2 -F {} -b {} {}` failed ({}): {}",
            format.as_str(),
            image.display(),
            overlay.display(),
            out.status,
            tail(&String::from_utf8_lossy(&out.stderr), 10)
        );
    }
    Ok(())
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A running QEMU. Dropping it kills QEMU; so does reaching the deadline.
#[derive(Debug)]
pub struct QemuProcess {
    child: Arc<Mutex<Child>>,
    log_path: PathBuf,
    cancel: Option<mpsc::Sender<()>>,
    watchdog: Option<JoinHandle<()>>,
}

fn lock(child: &Mutex<Child>) -> MutexGuard<'_, Child> {
    child
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl QemuProcess {
    /// Starts `qemu argv…` with stdout and stderr in `log_path`, and a
    /// watchdog thread that kills it at `deadline`.
    pub fn spawn(
        qemu: &Path,
        argv: &[OsString],
        log_path: &Path,
        deadline: Instant,
        log: &Log,
    ) -> Result<Self> {
        let out = std::fs::File::create(log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let err = out
            .try_clone()
            .with_context(|| format!("duplicating the handle of {}", log_path.display()))?;
        let mut command = Command::new(qemu);
        command
            .args(argv)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        die_with_parent(&mut command);
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", qemu.display()))?;
        log.info(format_args!(
            "started QEMU (pid {}): {}",
            child.id(),
            render_argv(qemu, argv)
        ));
        let child = Arc::new(Mutex::new(child));
        let (cancel, cancelled) = mpsc::channel::<()>();
        let watched = Arc::clone(&child);
        let wlog = log.clone();
        let watchdog = std::thread::Builder::new()
            .name(format!("{}-watchdog", log.prefix()))
            .spawn(move || {
                let left = deadline.saturating_duration_since(Instant::now());
                if let Err(RecvTimeoutError::Timeout) = cancelled.recv_timeout(left) {
                    let mut child = lock(&watched);
                    if let Ok(None) = child.try_wait() {
                        wlog.info("global deadline reached: killing QEMU");
                        let _ = child.kill();
                        let _ = child.wait();
                    }
                }
            })
            .context("starting the watchdog thread")?;
        Ok(QemuProcess {
            child,
            log_path: log_path.to_path_buf(),
            cancel: Some(cancel),
            watchdog: Some(watchdog),
        })
    }

    /// QEMU's pid.
    pub fn pid(&self) -> u32 {
        lock(&self.child).id()
    }

    /// The exit status if QEMU has exited.
    pub fn try_wait(&self) -> Result<Option<ExitStatus>> {
        lock(&self.child)
            .try_wait()
            .context("checking whether QEMU exited")
    }

    /// Waits up to `timeout` for QEMU to exit; `None` if it still runs.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= end {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills QEMU (SIGKILL) and reaps it.
    pub fn kill(&self) {
        let mut child = lock(&self.child);
        if let Ok(None) = child.try_wait() {
            let _ = child.kill();
        }
        let _ = child.wait();
    }

    /// A reason to give up on this QEMU at once: it exited, or it reported
    /// a KVM failure (it then hangs rather than exits).
    pub fn fatal_error(&self) -> Option<String> {
        if let Ok(Some(status)) = self.try_wait() {
            return Some(format!("QEMU exited ({status}): {}", self.log_tail(10)));
        }
        let log = String::from_utf8_lossy(&std::fs::read(&self.log_path).unwrap_or_default())
            .into_owned();
        if log.contains("KVM internal error") || log.contains("emulation failure") {
            let lines: Vec<&str> = log
                .lines()
                .filter(|l| {
                    l.contains("KVM") || l.contains("emulation failure") || l.starts_with("RIP=")
                })
                .take(4)
                .collect();
            return Some(format!(
                "QEMU reports a KVM failure, the guest is stuck (KVM unusable here? set VMTEST_ACCEL=tcg): {}",
                lines.join(" / ")
            ));
        }
        None
    }

    /// The last `n` lines of QEMU's own output (its stderr).
    pub fn log_tail(&self, n: usize) -> String {
        tail(
            &String::from_utf8_lossy(&std::fs::read(&self.log_path).unwrap_or_default()),
            n,
        )
    }
}

impl Drop for QemuProcess {
    fn drop(&mut self) {
        self.kill();
        drop(self.cancel.take());
        if let Some(handle) = self.watchdog.take() {
            let _ = handle.join();
        }
    }
}

/// A shell-like rendering of a command line, for logs (credentials are in
/// files, so only their paths appear; long arguments are cut).
pub fn render_argv(program: &Path, argv: &[OsString]) -> String {
    std::iter::once(program.as_os_str())
        .chain(argv.iter().map(OsString::as_os_str))
        .map(|a: &OsStr| {
            let s = a.to_string_lossy();
            if s.len() > 120 {
                format!(
                    "{}…",
                    &s[..s.char_indices().nth(100).map_or(s.len(), |(i, _)| i)]
                )
            } else {
                s.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(argv: &[OsString]) -> Vec<String> {
        argv.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    /// The value following `flag`, for every occurrence.
    fn values(argv: &[String], flag: &str) -> Vec<String> {
        argv.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].clone())
            .collect()
    }

    fn launch<'a>(
        firmware: FirmwareArgs,
        kernel: Option<&'a DirectKernel>,
        creds: &'a [PathBuf],
        extra: &'a [OsString],
    ) -> Launch<'a> {
        Launch {
            name: "vm1",
            accel: Accel::Tcg,
            memory_mib: 2048,
            cpus: 2,
            icount: None,
            overlay: Path::new("/s/vm1.qcow2"),
            serial_log: Path::new("/s/vm1-boot1.serial.log"),
            qmp_socket: Path::new("/s/qmp.sock"),
            shell_socket: Path::new("/s/shell.sock"),
            firmware,
            direct_kernel: kernel,
            credential_files: creds,
            extra_args: extra,
        }
    }

    #[test]
    fn bios_disk_boot() {
        let argv = strings(&qemu_argv(&launch(FirmwareArgs::Bios, None, &[], &[])));
        let expected: Vec<String> = [
            "-name", "vm1", "-machine", "q35", "-accel", "tcg", "-cpu", "qemu64,cx16=off",
            "-m", "2048", "-smp", "2",
            "-nodefaults", "-nographic", "-no-reboot", "-monitor", "none",
            "-chardev", "file,id=serial0,path=/s/vm1-boot1.serial.log", "-serial", "chardev:serial0",
            "-chardev", "socket,id=qmp,path=/s/qmp.sock,server=on,wait=off", "-mon", "chardev=qmp,mode=control",
            "-drive", "file=/s/vm1.qcow2,format=qcow2,if=none,id=disk0,discard=unmap",
            "-device", "virtio-blk-pci,drive=disk0,bootindex=1",
            "-device", "virtio-rng-pci",
            "-device", "virtio-serial-pci,id=vmtest-serial",
            "-chardev", "socket,id=vmtest-shell,path=/s/shell.sock,server=on,wait=off",
            "-device", "virtserialport,bus=vmtest-serial.0,chardev=vmtest-shell,name=org.openclaw.vmtest.shell",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(argv, expected);
    }

    #[test]
    fn icount_parses_shift_and_sleep() {
        assert_eq!(
            Icount::parse("0").unwrap(),
            Icount {
                shift: 0,
                sleep: true
            }
        );
        assert_eq!(
            Icount::parse("3,sleep=off").unwrap().to_string(),
            "shift=3,sleep=off"
        );
        assert!(Icount::parse("11").is_err());
        assert!(Icount::parse("x").is_err());
        assert!(Icount::parse("0,align=on").is_err());
    }

    #[test]
    fn icount_only_under_tcg() {
        let mut l = launch(FirmwareArgs::Bios, None, &[], &[]);
        l.icount = Some(Icount {
            shift: 0,
            sleep: false,
        });
        let argv = strings(&qemu_argv(&l));
        assert_eq!(values(&argv, "-icount"), ["shift=0,sleep=off"]);
        assert_eq!(values(&argv, "-cpu"), ["qemu64,cx16=off"]);
        l.accel = Accel::Kvm;
        let argv = strings(&qemu_argv(&l));
        assert!(values(&argv, "-icount").is_empty(), "{argv:?}");
    }

    #[test]
    fn uefi_kvm_direct_kernel_credentials_extra() {
        let kernel = DirectKernel {
            kernel: "/r/vmlinuz".into(),
            initrd: Some("/r/initrd.img".into()),
            cmdline: "root=/dev/vda rw console=ttyS0".into(),
        };
        let creds = [PathBuf::from("/s/cred,1")];
        let extra: Vec<OsString> = ["-nic", "tap,ifname=t0"].map(OsString::from).to_vec();
        let fw = FirmwareArgs::Uefi {
            code: "/usr/share/OVMF/OVMF_CODE_4M.fd".into(),
            vars: "/s/dir,with,commas/VARS.fd".into(),
        };
        let mut l = launch(fw, Some(&kernel), &creds, &extra);
        l.accel = Accel::Kvm;
        let argv = strings(&qemu_argv(&l));
        assert_eq!(values(&argv, "-accel"), ["kvm"]);
        assert_eq!(values(&argv, "-cpu"), ["host"]);
        assert_eq!(
            values(&argv, "-drive"),
            [
                "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
                "if=pflash,format=raw,unit=1,file=/s/dir,,with,,commas/VARS.fd",
                "file=/s/vm1.qcow2,format=qcow2,if=none,id=disk0,discard=unmap",
            ]
        );
        assert_eq!(values(&argv, "-kernel"), ["/r/vmlinuz"]);
        assert_eq!(values(&argv, "-initrd"), ["/r/initrd.img"]);
        assert_eq!(values(&argv, "-append"), ["root=/dev/vda rw console=ttyS0"]);
        assert_eq!(values(&argv, "-smbios"), ["type=11,path=/s/cred,,1"]);
        assert_eq!(argv[argv.len() - 2..], ["-nic", "tap,ifname=t0"]);
    }

    #[test]
    fn commas_in_paths_are_doubled_byte_exact() {
        let p = Path::new(OsStr::from_bytes(b"/a,b/\xff.log"));
        assert_eq!(
            opt_path("path=", p, ",x").as_bytes(),
            b"path=/a,,b/\xff.log,x"
        );
    }

    #[test]
    fn watchdog_kills_at_the_deadline_and_drop_kills() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::new("test");
        let sleep = which("sleep", SBIN_DIRS).unwrap();
        let argv = [OsString::from("30")];
        let deadline = Instant::now() + Duration::from_millis(300);
        let p =
            QemuProcess::spawn(&sleep, &argv, &dir.path().join("a.log"), deadline, &log).unwrap();
        let status = p.wait_timeout(Duration::from_secs(10)).unwrap();
        assert!(status.is_some_and(|s| !s.success()), "{status:?}");
        assert!(p.fatal_error().is_some());

        let far = Instant::now() + Duration::from_secs(3600);
        let p = QemuProcess::spawn(&sleep, &argv, &dir.path().join("b.log"), far, &log).unwrap();
        let pid = p.pid();
        assert!(p.fatal_error().is_none());
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        drop(p);
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn child_dies_with_the_spawning_thread() {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("c.log");
        let pid = std::thread::spawn(move || {
            let sleep = which("sleep", SBIN_DIRS).unwrap();
            let far = Instant::now() + Duration::from_secs(3600);
            let p = QemuProcess::spawn(
                &sleep,
                &[OsString::from("30")],
                &log_path,
                far,
                &Log::new("test"),
            )
            .unwrap();
            let pid = p.pid();
            // As if the process were killed: no destructor runs.
            std::mem::forget(p);
            pid
        })
        .join()
        .unwrap();
        let stat =
            |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let end = Instant::now() + Duration::from_secs(5);
        // Killed: a zombie (nobody reaps it), or gone.
        while !(stat(pid).is_empty() || stat(pid).contains(") Z ")) {
            assert!(Instant::now() < end, "child still alive: {}", stat(pid));
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn long_arguments_are_cut_in_the_log() {
        let argv = [OsString::from("x".repeat(200))];
        let shown = render_argv(Path::new("qemu"), &argv);
        assert_eq!(shown, format!("qemu {}…", "x".repeat(100)));
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
