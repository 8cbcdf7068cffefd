//! The machine API, in the style of the NixOS test driver: `succeed`,
//! `fail`, `wait_for_unit`, `wait_until_succeeds`, `crash`, `shutdown`, …

use std::ffi::OsString;
use std::panic::Location;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tempfile::TempDir;

use crate::accel::{self, Accel, AccelChoice};
use crate::credential::Credential;
use crate::firmware::{self, Firmware, OvmfFiles};
use crate::log::{Log, secs};
use crate::qemu::{self, DirectKernel, FirmwareArgs, ImageFormat, Launch, QemuProcess, tail};
use crate::qmp::Qmp;
use crate::retry::{Attempt, retry};
use crate::shell::{self, CommandOutput, NoReply, ShellChannel};
use hostutil::shell_quote;

/// How a machine is built and booted. [`MachineConfig::new`] gives the
/// defaults; the fields are public so a test can adjust any of them.
#[derive(Debug, Clone)]
pub struct MachineConfig {
    /// Machine name: log prefix and file-name stem (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// The tested image. Never written: the guest writes to a qcow2 overlay.
    pub image: PathBuf,
    /// Format of `image`.
    pub image_format: ImageFormat,
    /// Where the overlay, the OVMF variables and the per-boot logs go (kept
    /// after the machine is gone).
    pub state_dir: PathBuf,
    /// Firmware.
    pub firmware: Firmware,
    /// Memory in MiB (default 2048).
    pub memory_mib: u32,
    /// vCPUs (default 2).
    pub cpus: u32,
    /// Boot this kernel directly instead of the image's boot loader
    /// (development images without one).
    pub direct_kernel: Option<DirectKernel>,
    /// More systemd credentials for the guest (SMBIOS type 11), besides the
    /// two of the command channel.
    pub credentials: Vec<Credential>,
    /// Virtual disk size of the overlay in MiB (default: the image's size).
    pub disk_size_mib: Option<u64>,
    /// Appended to QEMU's argv (network devices, …).
    pub extra_args: Vec<OsString>,
    /// Accelerator; `None` probes (see [`crate::accel`]).
    pub accel: Option<Accel>,
    /// Under TCG, count guest time in executed instructions (`-icount
    /// shift=N[,sleep=off]`: 2^N ns per instruction) instead of host time. Software with
    /// hard-coded startup deadlines (OpenClaw's 5 s worker heartbeat) then
    /// sees the work it did, not how slowly it was emulated. It costs
    /// multi-threaded TCG: the vCPUs share one host thread. Ignored under KVM.
    pub icount: Option<qemu::Icount>,
    /// Global deadline: QEMU is killed then and every wait fails. Share one
    /// instant between machines to bound a whole test run.
    pub deadline: Instant,
    /// How long the first command may wait for the guest shell after a boot.
    pub boot_timeout: Duration,
    /// Guest-side timeout of a command (`succeed`, `fail`, `execute`, …).
    pub command_timeout: Duration,
    /// How long `shutdown` waits for the guest to power off.
    pub shutdown_timeout: Duration,
}

impl MachineConfig {
    /// A config with defaults: BIOS, 2 GiB, 2 vCPUs, accelerator probed,
    /// deadline in one hour, 5 min for the boot and for each command, 2 min
    /// for a shutdown.
    pub fn new(
        name: impl Into<String>,
        image: impl Into<PathBuf>,
        state_dir: impl Into<PathBuf>,
    ) -> Self {
        MachineConfig {
            name: name.into(),
            image: image.into(),
            image_format: ImageFormat::Raw,
            state_dir: state_dir.into(),
            firmware: Firmware::Bios,
            memory_mib: 2048,
            cpus: 2,
            direct_kernel: None,
            credentials: Vec::new(),
            disk_size_mib: None,
            extra_args: Vec::new(),
            accel: None,
            icount: None,
            deadline: Instant::now() + Duration::from_secs(3600),
            boot_timeout: Duration::from_secs(300),
            command_timeout: Duration::from_secs(300),
            // systemd gives each stop job 90 s before it kills the unit's
            // processes; a gateway busy stopping its sandboxes under TCG has
            // taken over a minute (CI): room for that, then the rest.
            shutdown_timeout: Duration::from_secs(300),
        }
    }
}

/// One boot's live parts.
#[derive(Debug)]
struct Running {
    qemu: QemuProcess,
    qmp: Qmp,
    shell: ShellChannel,
    serial_log: PathBuf,
    console_pos: usize,
    booted_at: Instant,
    /// Set once the guest stopped answering (see [`Machine::stalled`]).
    stall: Option<String>,
    /// The kernel's fault lines, once the serial console showed one (see
    /// [`Machine::kernel_fault`]).
    fault: Option<String>,
}

/// The error of every command on a boot whose kernel faulted (an oops or a
/// panic on the serial console): its text quotes the fault. The suite
/// restarts such a boot under TCG (see `suite::run`).
#[derive(Debug)]
pub struct KernelFault(pub String);

impl std::fmt::Display for KernelFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KernelFault {}

/// A QEMU virtual machine booted from a copy-on-write overlay of an image,
/// with a command channel into the guest.
///
/// Dropping it kills QEMU. The overlay outlives boots: after [`crash`] or
/// [`shutdown`], [`power_on`] boots the same disk again.
///
/// [`crash`]: Machine::crash
/// [`shutdown`]: Machine::shutdown
/// [`power_on`]: Machine::power_on
#[derive(Debug)]
pub struct Machine {
    config: MachineConfig,
    log: Log,
    qemu_bin: PathBuf,
    accel: AccelChoice,
    overlay: PathBuf,
    ovmf: Option<(OvmfFiles, PathBuf)>,
    sockets: TempDir,
    boots: u32,
    run: Option<Running>,
}

/// How long `shutdown` waits after pressing the power button before it
/// presses it again.
const POWER_BUTTON_REPEAT: Duration = Duration::from_secs(10);

/// Guest-side timeout of the liveness probe that follows a command that got
/// no answer: a guest that cannot run `true` in this long is stalled.
const STALL_PROBE: Duration = Duration::from_secs(45);

/// Serial console lines that say the guest kernel is in trouble; a stall
/// report quotes them.
const KERNEL_TROUBLE: &[&str] = &[
    "Kernel panic",
    "double fault",
    "BUG: ",
    "Oops",
    "soft lockup",
    "hard LOCKUP",
    "rcu_preempt detected stalls",
    "rcu_sched detected stalls",
    "blocked for more than",
    "Out of memory",
    "invoked oom-killer",
];

/// The lines of a serial log that match [`KERNEL_TROUBLE`] (at most
/// `limit`, the first ones: the first sign is the cause).
pub fn kernel_trouble(serial: &str, limit: usize) -> Vec<String> {
    serial
        .lines()
        .filter(|l| KERNEL_TROUBLE.iter().any(|t| l.contains(t)))
        .take(limit)
        .map(str::to_string)
        .collect()
}

/// Kernel messages that say the guest kernel itself faulted (an oops or a
/// panic): from then on the boot runs on a kernel in an undefined state
/// (a task died holding its locks), unlike the out-of-memory kills and
/// slow-task warnings of [`KERNEL_TROUBLE`] that a loaded guest shows.
const KERNEL_FAULTS: &[&str] = &[
    "BUG: ",
    "Oops: ",
    "kernel BUG at ",
    "general protection fault",
    "Kernel panic",
    "invalid opcode: ",
    "traps: PANIC: double fault",
];

/// The kernel fault lines of a serial log (see [`KERNEL_FAULTS`]), at most
/// `limit`, the first ones. Only kernel messages count (the text after a
/// `[ seconds.micros] ` stamp, which may follow a login prompt on the same
/// console line), not a program's output that mentions a bug.
pub fn kernel_faults(serial: &str, limit: usize) -> Vec<String> {
    serial
        .lines()
        .filter(|l| {
            kernel_message(l).is_some_and(|m| KERNEL_FAULTS.iter().any(|t| m.starts_with(t)))
        })
        .take(limit)
        .map(str::to_string)
        .collect()
}

/// The kernel message of a console line: what follows its first
/// `[ seconds.micros] ` stamp, if it has one.
fn kernel_message(line: &str) -> Option<&str> {
    let mut rest = line;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        if let Some(close) = after.find("] ") {
            let stamp = after[..close].trim_start();
            if let Some((secs, micros)) = stamp.split_once('.') {
                let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
                if digits(secs) && digits(micros) {
                    return Some(&after[close + 2..]);
                }
            }
        }
        rest = after;
    }
    None
}

/// A [`KernelFault`] error once `serial_log` shows a kernel fault, which
/// `fault` then remembers (the log is not read again). The one check of a
/// boot's kernel, for commands and for the wait for the command channel.
fn watch_kernel(
    fault: &mut Option<String>,
    name: &str,
    boot: u32,
    serial_log: &Path,
) -> Result<()> {
    if fault.is_none() {
        let serial =
            String::from_utf8_lossy(&std::fs::read(serial_log).unwrap_or_default()).into_owned();
        let faults = kernel_faults(&serial, 8);
        if !faults.is_empty() {
            *fault = Some(format!(
                "{name}: the guest kernel faulted on boot {boot} ({}):\n{}",
                serial_log.display(),
                faults.join("\n")
            ));
        }
    }
    match fault {
        Some(f) => Err(KernelFault(f.clone()).into()),
        None => Ok(()),
    }
}

/// Longest command text shown in log lines.
const LOGGED_COMMAND_LEN: usize = 160;

fn short(cmd: &str) -> String {
    let one_line = cmd.replace('\n', "\\n");
    match one_line.char_indices().nth(LOGGED_COMMAND_LEN) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

fn tail_bytes(bytes: &[u8], lines: usize) -> String {
    tail(&String::from_utf8_lossy(bytes), lines)
}

impl Machine {
    /// Creates a fresh overlay of `config.image` (and a fresh OVMF variable
    /// store for UEFI) in `config.state_dir`, then boots it. Returns once
    /// QEMU runs; the first command waits for the guest shell.
    pub fn start(config: MachineConfig) -> Result<Machine> {
        let name = config.name.clone();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            bail!("invalid machine name {name:?}: use letters, digits, `-`, `_` and `.`");
        }
        let log = Log::new(&name);
        std::fs::create_dir_all(&config.state_dir)
            .with_context(|| format!("creating state directory {}", config.state_dir.display()))?;
        let qemu_bin = qemu::qemu_binary()?;
        let accel = match config.accel {
            Some(accel) => AccelChoice {
                accel,
                reason: "set in the machine config".into(),
            },
            None => accel::choose(&qemu_bin)?,
        };
        log.info(format_args!(
            "accelerator: {} ({})",
            accel.accel, accel.reason
        ));
        if let (Accel::Tcg, Some(icount)) = (accel.accel, config.icount) {
            log.info(format_args!(
                "guest time counts instructions (-icount {icount}), not host time"
            ));
        }
        let overlay = config.state_dir.join(format!("{name}.qcow2"));
        qemu::create_overlay(
            &config.image,
            config.image_format,
            &overlay,
            config.disk_size_mib,
        )?;
        let ovmf = match config.firmware {
            Firmware::Bios => None,
            Firmware::Uefi => {
                let files = firmware::find_ovmf()?;
                let vars = config.state_dir.join(format!("{name}-OVMF_VARS.fd"));
                if vars.exists() {
                    std::fs::remove_file(&vars)
                        .with_context(|| format!("removing old {}", vars.display()))?;
                }
                firmware::prepare_vars(&files, &vars)?;
                Some((files, vars))
            }
        };
        let sockets = socket_dir()?;
        log.info(format_args!(
            "overlay {} on {} ({}), firmware {}",
            overlay.display(),
            config.image.display(),
            config.image_format.as_str(),
            config.firmware
        ));
        let mut machine = Machine {
            config,
            log,
            qemu_bin,
            accel,
            overlay,
            ovmf,
            sockets,
            boots: 0,
            run: None,
        };
        machine.power_on()?;
        Ok(machine)
    }

    /// The machine's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The accelerator in use and why.
    pub fn accel(&self) -> &AccelChoice {
        &self.accel
    }

    /// The qcow2 overlay holding everything the guest wrote.
    pub fn overlay_path(&self) -> &Path {
        &self.overlay
    }

    /// The serial console log of the current (or last) boot.
    pub fn serial_log_path(&self) -> PathBuf {
        self.file(&format!("boot{}.serial.log", self.boots.max(1)))
    }

    /// How many times QEMU was started.
    pub fn boot_count(&self) -> u32 {
        self.boots
    }

    /// The config, to change before the next [`Machine::power_on`] (e.g.
    /// drop a credential for the second boot).
    pub fn config_mut(&mut self) -> &mut MachineConfig {
        &mut self.config
    }

    /// The machine's log, for test code that wants its lines prefixed alike.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Sends a QMP command to this boot's QEMU and returns its `return`
    /// value (for what the verbs here do not cover: device hot-plug, …).
    pub fn qmp(
        &mut self,
        command: &str,
        arguments: Option<serde_json::Value>,
    ) -> Result<serde_json::Value> {
        self.running()?.qmp.execute(command, arguments)
    }

    /// Stops the guest's CPUs (QMP `stop`): it uses no host CPU until
    /// [`Machine::resume`]. For running another machine beside it on a
    /// small host without starving either.
    pub fn pause(&mut self) -> Result<()> {
        self.qmp("stop", None)
            .with_context(|| format!("{}: pausing", self.config.name))?;
        self.log.info(format_args!("paused (QMP stop)"));
        Ok(())
    }

    /// Lets a paused guest run again (QMP `cont`).
    pub fn resume(&mut self) -> Result<()> {
        self.qmp("cont", None)
            .with_context(|| format!("{}: resuming", self.config.name))?;
        self.log.info(format_args!("resumed (QMP cont)"));
        Ok(())
    }

    /// Whether QEMU is running.
    pub fn is_running(&mut self) -> bool {
        match &self.run {
            Some(run) => matches!(run.qemu.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn file(&self, suffix: &str) -> PathBuf {
        self.config
            .state_dir
            .join(format!("{}-{suffix}", self.config.name))
    }

    /// Boots the machine from its overlay: the first boot (done by
    /// [`Machine::start`]) or again after [`Machine::crash`] or
    /// [`Machine::shutdown`]. Each boot has its own serial log.
    pub fn power_on(&mut self) -> Result<()> {
        if self.is_running() {
            bail!(
                "{}: power_on: the machine is already running",
                self.config.name
            );
        }
        self.run = None;
        let _ = self.budget(Duration::ZERO)?;
        self.boots += 1;
        let boot = self.boots;
        let serial_log = self.file(&format!("boot{boot}.serial.log"));
        let qemu_log = self.file(&format!("boot{boot}.qemu.log"));
        let qmp_socket = self.sockets.path().join(format!("qmp{boot}.sock"));
        let shell_socket = self.sockets.path().join(format!("shell{boot}.sock"));
        let mut credentials = shell::credentials()?;
        for cred in &self.config.credentials {
            if credentials.iter().any(|c| c.name() == cred.name()) {
                bail!(
                    "credential {} is reserved for the harness's command channel",
                    cred.name()
                );
            }
        }
        credentials.extend(self.config.credentials.iter().cloned());
        // Into private files (the socket directory is 0700), not onto
        // QEMU's argv, which every user of the host can read.
        let mut credential_files = Vec::new();
        for (i, cred) in credentials.iter().enumerate() {
            let file = self.sockets.path().join(format!("cred{boot}-{i}"));
            let _ = std::fs::remove_file(&file);
            cred.write_smbios_file(&file)?;
            credential_files.push(file);
        }
        let firmware = match &self.ovmf {
            None => FirmwareArgs::Bios,
            Some((files, vars)) => FirmwareArgs::Uefi {
                code: files.code.clone(),
                vars: vars.clone(),
            },
        };
        let argv = qemu::qemu_argv(&Launch {
            name: &self.config.name,
            accel: self.accel.accel,
            memory_mib: self.config.memory_mib,
            cpus: self.config.cpus,
            icount: self.config.icount,
            overlay: &self.overlay,
            serial_log: &serial_log,
            qmp_socket: &qmp_socket,
            shell_socket: &shell_socket,
            firmware,
            direct_kernel: self.config.direct_kernel.as_ref(),
            credential_files: &credential_files,
            extra_args: &self.config.extra_args,
        });
        self.log.info(format_args!(
            "boot {boot}: serial log {}",
            serial_log.display()
        ));
        let qemu = QemuProcess::spawn(
            &self.qemu_bin,
            &argv,
            &qemu_log,
            self.config.deadline,
            &self.log,
        )?;
        let connect = Duration::from_secs(10);
        let sockets = Qmp::connect(&qmp_socket, connect, &self.log).and_then(|qmp| {
            Ok((
                qmp,
                ShellChannel::connect(&shell_socket, connect, &self.log)?,
            ))
        });
        let (qmp, shell) = match sockets {
            Ok(pair) => pair,
            Err(e) => {
                let exited = qemu.wait_timeout(Duration::from_millis(200)).ok().flatten();
                let tail = qemu.log_tail(20);
                drop(qemu);
                return Err(e).with_context(|| match exited {
                    Some(status) => format!("QEMU exited at start ({status}); its output:\n{tail}"),
                    None => {
                        format!("QEMU started but its sockets did not answer; its output:\n{tail}")
                    }
                });
            }
        };
        self.run = Some(Running {
            qemu,
            qmp,
            shell,
            serial_log,
            console_pos: 0,
            booted_at: Instant::now(),
            stall: None,
            fault: None,
        });
        Ok(())
    }

    /// `timeout` cut to what is left before the global deadline; an error
    /// once the deadline has passed.
    fn budget(&self, timeout: Duration) -> Result<Duration> {
        let left = self
            .config
            .deadline
            .saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("{}: the global deadline has passed", self.config.name);
        }
        Ok(timeout.min(left))
    }

    /// The running boot, or an error saying why there is none (QEMU exited:
    /// its status, its output and the end of the serial log).
    fn running(&mut self) -> Result<&mut Running> {
        let exited = match &self.run {
            None => bail!(
                "{}: the machine is not running (call power_on)",
                self.config.name
            ),
            Some(run) => run.qemu.try_wait()?,
        };
        if let Some(status) = exited {
            let why = self.death_report(status);
            self.run = None;
            bail!(why);
        }
        self.run
            .as_mut()
            .ok_or_else(|| anyhow!("{}: the machine is not running", self.config.name))
    }

    fn death_report(&self, status: std::process::ExitStatus) -> String {
        let (qemu_tail, serial_tail) = match &self.run {
            Some(run) => (
                run.qemu.log_tail(15),
                tail_bytes(&std::fs::read(&run.serial_log).unwrap_or_default(), 25),
            ),
            None => (String::new(), String::new()),
        };
        format!(
            "{}: QEMU exited unexpectedly ({status})\n--- QEMU output (tail) ---\n{qemu_tail}\n--- serial console (tail, {}) ---\n{serial_tail}",
            self.config.name,
            self.serial_log_path().display()
        )
    }

    /// Waits (up to `timeout`) until the guest's command channel answers.
    /// Commands call this implicitly with `boot_timeout`.
    pub fn wait_for_shell(&mut self, timeout: Duration) -> Result<()> {
        let timeout = self.budget(timeout)?;
        let boot = self.boots;
        let log = self.log.clone();
        let name = self.config.name.clone();
        let run = self.running()?;
        if run.shell.is_ready() {
            return Ok(());
        }
        let Running {
            shell,
            qemu,
            serial_log,
            fault,
            ..
        } = run;
        let mut check = || {
            if let Some(why) = qemu.fatal_error() {
                bail!("QEMU failed: {why}");
            }
            watch_kernel(fault, &name, boot, serial_log)
        };
        match shell.wait_ready(timeout, &mut check) {
            Ok(_) => {
                log.info(format_args!(
                    "boot {boot}: command channel ready {} after QEMU start",
                    secs(run.booted_at.elapsed())
                ));
                Ok(())
            }
            Err(e) => {
                let serial = tail_bytes(&std::fs::read(&run.serial_log).unwrap_or_default(), 25);
                // A dead QEMU explains more than the timeout.
                self.running()?;
                Err(anyhow!(
                    "{}: boot {boot}: {e:#}\n--- serial console (tail) ---\n{serial}",
                    self.config.name
                ))
            }
        }
    }

    /// Runs `command` (bash, `set -euo pipefail`) as root in the guest with
    /// the configured command timeout and returns its exact output,
    /// whatever the exit status.
    pub fn run(&mut self, command: &str) -> Result<CommandOutput> {
        self.run_timeout(command, self.config.command_timeout)
    }

    /// [`Machine::run`] with an explicit guest-side timeout.
    pub fn run_timeout(&mut self, command: &str, timeout: Duration) -> Result<CommandOutput> {
        self.run_logged(command, timeout, true)
    }

    /// Runs a command; `logged` says whether to write a log line (polling
    /// loops don't: [`retry`] logs their outcome).
    fn run_logged(
        &mut self,
        command: &str,
        timeout: Duration,
        logged: bool,
    ) -> Result<CommandOutput> {
        if let Some(stall) = self.stalled() {
            bail!("{stall}");
        }
        self.check_kernel()?;
        self.wait_for_shell(self.config.boot_timeout)?;
        let timeout = self.budget(timeout)?;
        let start = Instant::now();
        let (name, boot) = (self.config.name.clone(), self.boots);
        let Running {
            shell,
            serial_log,
            fault,
            ..
        } = self.running()?;
        // A kernel that dies mid-command is seen within seconds, not after
        // the command's whole timeout.
        let mut check = || watch_kernel(fault, &name, boot, serial_log);
        let result = shell.run_watched(command, timeout, &mut check);
        match result {
            Ok(out) => {
                if !logged {
                    return Ok(out);
                }
                self.log.info(format_args!(
                    "`{}`: exit {} in {}",
                    short(command),
                    out.status,
                    secs(start.elapsed())
                ));
                Ok(out)
            }
            Err(e) => {
                self.running()?;
                if e.downcast_ref::<NoReply>().is_some() {
                    self.probe_stall(command, start.elapsed())?;
                }
                Err(e).with_context(|| format!("running `{}` in the guest", short(command)))
            }
        }
    }

    /// Why the guest of this boot stopped answering, once it did: a command
    /// got no answer within its timeout and then neither did `true`. Every
    /// later command fails at once with this text (a stalled guest would
    /// cost each one its whole timeout); [`Machine::power_on`] starts over.
    pub fn stalled(&self) -> Option<&str> {
        self.run.as_ref().and_then(|r| r.stall.as_deref())
    }

    /// The kernel fault (oops, panic) on this boot's serial console, once
    /// there is one: its lines and the log's path. `None` while the kernel
    /// is sound.
    pub fn kernel_fault(&mut self) -> Option<String> {
        let _ = self.check_kernel();
        self.run.as_ref().and_then(|r| r.fault.clone())
    }

    /// A [`KernelFault`] error once this boot's kernel faulted: every
    /// command then fails at once (the kernel's state is undefined: a task
    /// may have died holding its locks).
    fn check_kernel(&mut self) -> Result<()> {
        let name = self.config.name.clone();
        let boot = self.boots;
        match self.run.as_mut() {
            Some(run) => watch_kernel(&mut run.fault, &name, boot, &run.serial_log),
            None => Ok(()),
        }
    }

    /// Seconds since this boot's QEMU started (zero when not running).
    pub fn uptime(&self) -> Duration {
        self.run
            .as_ref()
            .map(|r| r.booted_at.elapsed())
            .unwrap_or_default()
    }

    /// After `command` got no answer in `waited`: runs `true` with
    /// [`STALL_PROBE`]; no answer marks the boot stalled (with the serial
    /// console's tail and any kernel trouble in it) and is the error.
    fn probe_stall(&mut self, command: &str, waited: Duration) -> Result<()> {
        let name = self.config.name.clone();
        let run = self.running()?;
        let t = Instant::now();
        let Err(probe) = run.shell.run("true", STALL_PROBE) else {
            return Ok(());
        };
        let uptime = run.booted_at.elapsed();
        let serial = String::from_utf8_lossy(&std::fs::read(&run.serial_log).unwrap_or_default())
            .into_owned();
        let trouble = kernel_trouble(&serial, 12);
        let why = format!(
            "{name}: the guest stopped answering {} after boot: `{}` got no answer in {}, then `true` none in {} ({probe:#})\n\
             --- kernel trouble on the serial console ({}) ---\n{}\n\
             --- serial console (tail) ---\n{}",
            secs(uptime),
            short(command),
            secs(waited),
            secs(t.elapsed()),
            run.serial_log.display(),
            if trouble.is_empty() {
                "(none)".to_string()
            } else {
                trouble.join("\n")
            },
            tail(&serial, 25)
        );
        run.stall = Some(why.clone());
        self.log.info(format_args!("{why}"));
        bail!(why)
    }

    /// Runs `command`; returns its exit status and standard output.
    pub fn execute(&mut self, command: &str) -> Result<(i32, String)> {
        let out = self.run(command)?;
        Ok((out.status, out.stdout_text()))
    }

    /// Runs `command` and returns its standard output; a non-zero exit is
    /// an error naming the command, the status and the output.
    #[track_caller]
    pub fn succeed(&mut self, command: &str) -> Result<String> {
        let caller = Location::caller();
        self.succeed_at(command, caller)
    }

    fn succeed_at(&mut self, command: &str, caller: &Location<'_>) -> Result<String> {
        let out = self
            .run(command)
            .with_context(|| format!("succeed at {caller}"))?;
        if out.status != 0 {
            bail!(
                "succeed at {caller}: command `{}` failed with exit status {}{}",
                short(command),
                out.status,
                output_report(&out)
            );
        }
        Ok(out.stdout_text())
    }

    /// Runs `command` and expects a non-zero exit; returns its standard
    /// output. Exit status 0 is an error.
    #[track_caller]
    pub fn fail(&mut self, command: &str) -> Result<String> {
        let caller = Location::caller();
        let out = self
            .run(command)
            .with_context(|| format!("fail at {caller}"))?;
        if out.status == 0 {
            bail!(
                "fail at {caller}: command `{}` unexpectedly succeeded{}",
                short(command),
                output_report(&out)
            );
        }
        Ok(out.stdout_text())
    }

    /// Repeats `command` until it exits 0 (for up to `timeout`); returns its
    /// standard output.
    #[track_caller]
    pub fn wait_until_succeeds(&mut self, command: &str, timeout: Duration) -> Result<String> {
        let caller = Location::caller();
        self.wait_for_shell(self.config.boot_timeout)
            .with_context(|| format!("wait_until_succeeds at {caller}"))?;
        let timeout = self.budget(timeout)?;
        let log = self.log.clone();
        let what = format!("`{}` to succeed", short(command));
        retry(&log, &what, timeout, |_| {
            let out = self.run_logged(command, timeout, false)?;
            Ok(if out.status == 0 {
                Attempt::Done(out.stdout_text())
            } else {
                Attempt::NotYet(format!("exit status {}{}", out.status, output_report(&out)))
            })
        })
        .with_context(|| format!("wait_until_succeeds at {caller}"))
    }

    /// Repeats `command` until it exits non-zero (for up to `timeout`);
    /// returns its standard output.
    #[track_caller]
    pub fn wait_until_fails(&mut self, command: &str, timeout: Duration) -> Result<String> {
        let caller = Location::caller();
        self.wait_for_shell(self.config.boot_timeout)
            .with_context(|| format!("wait_until_fails at {caller}"))?;
        let timeout = self.budget(timeout)?;
        let log = self.log.clone();
        let what = format!("`{}` to fail", short(command));
        retry(&log, &what, timeout, |_| {
            let out = self.run_logged(command, timeout, false)?;
            Ok(if out.status != 0 {
                Attempt::Done(out.stdout_text())
            } else {
                Attempt::NotYet(format!("exit status 0{}", output_report(&out)))
            })
        })
        .with_context(|| format!("wait_until_fails at {caller}"))
    }

    /// Waits until `unit` is active, for up to `timeout`: a system unit, or
    /// with `user` a unit of that user's systemd instance.
    ///
    /// Fails at once, with `systemctl status` and the unit's journal, when
    /// the unit is `failed`, or inactive with nothing queued to start it.
    #[track_caller]
    pub fn wait_for_unit(
        &mut self,
        unit: &str,
        user: Option<&str>,
        timeout: Duration,
    ) -> Result<()> {
        let caller = Location::caller();
        self.wait_for_shell(self.config.boot_timeout)
            .with_context(|| format!("wait_for_unit at {caller}"))?;
        let timeout = self.budget(timeout)?;
        let log = self.log.clone();
        let what = match user {
            None => format!("unit {unit}"),
            Some(u) => format!("user unit {unit} of {u}"),
        };
        let show = unit_probe_script(unit, user);
        let verdict = retry(&log, &format!("{what} to be active"), timeout, |_| {
            let out = self.run_logged(&show, Duration::from_secs(30), false)?;
            if out.status != 0 {
                return Ok(Attempt::NotYet(format!(
                    "systemctl failed (exit {}): {}",
                    out.status,
                    out.stderr_text().trim()
                )));
            }
            let state = UnitState::parse(&out.stdout_text());
            Ok(match state.verdict() {
                UnitVerdict::Active => Attempt::Done(None),
                UnitVerdict::Failed(why) => Attempt::Done(Some(why)),
                UnitVerdict::Pending(why) => Attempt::NotYet(why),
            })
        })
        .with_context(|| format!("wait_for_unit at {caller}"))?;
        if let Some(why) = verdict {
            let details = self.unit_diagnostics(unit, user);
            log.info(format_args!("{what}: {why}\n{details}"));
            bail!("wait_for_unit at {caller}: {what} {why}\n{details}");
        }
        Ok(())
    }

    /// `systemctl status` and the journal tail of a unit, for error reports.
    fn unit_diagnostics(&mut self, unit: &str, user: Option<&str>) -> String {
        let cmd = match user {
            None => format!(
                "systemctl status --no-pager -l -n 0 -- {q} || true; echo '--- journal ---'; \
                 journalctl --no-pager -n 40 -u {q} || true",
                q = shell_quote(unit)
            ),
            Some(u) => format!(
                "m=user@$(id -u {qu}).service; systemctl status --no-pager -l -n 0 -- \"$m\" || true; \
                 {} status --no-pager -l -n 0 -- {q} || true; echo '--- journal ---'; \
                 journalctl --no-pager -n 40 -u \"$m\" || true; \
                 journalctl --no-pager -n 40 _SYSTEMD_USER_UNIT={q} || true",
                systemctl(user),
                q = shell_quote(unit),
                qu = shell_quote(u)
            ),
        };
        match self.run_timeout(&cmd, Duration::from_secs(30)) {
            Ok(out) => format!("--- systemctl status ---\n{}", out.stdout_text().trim_end()),
            Err(e) => format!("(could not collect unit diagnostics: {e:#})"),
        }
    }

    /// Waits until something in the guest listens on TCP `port` (any
    /// address, IPv4 or IPv6), for up to `timeout`.
    #[track_caller]
    pub fn wait_for_open_port(&mut self, port: u16, timeout: Duration) -> Result<()> {
        let caller = Location::caller();
        self.wait_for_shell(self.config.boot_timeout)
            .with_context(|| format!("wait_for_open_port at {caller}"))?;
        let timeout = self.budget(timeout)?;
        let log = self.log.clone();
        retry(&log, &format!("TCP port {port} to listen"), timeout, |_| {
            let out = self.run_logged(
                "cat /proc/net/tcp; cat /proc/net/tcp6 2>/dev/null || true",
                Duration::from_secs(30),
                false,
            )?;
            let ports = listening_tcp_ports(&out.stdout_text());
            Ok(if ports.contains(&port) {
                Attempt::Done(())
            } else {
                Attempt::NotYet(format!("listening TCP ports: {ports:?}"))
            })
        })
        .with_context(|| format!("wait_for_open_port at {caller}"))
    }

    /// Waits until `text` (a plain substring) appears on the serial console
    /// of the current boot, after the end of the previous match (so two
    /// calls for the same text need two occurrences).
    #[track_caller]
    pub fn wait_for_console_text(&mut self, text: &str, timeout: Duration) -> Result<()> {
        let caller = Location::caller();
        let timeout = self.budget(timeout)?;
        let log = self.log.clone();
        let needle = text.as_bytes().to_vec();
        retry(&log, &format!("console text {text:?}"), timeout, |_| {
            let (path, from) = {
                let run = self.running()?;
                (run.serial_log.clone(), run.console_pos)
            };
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            if let Some(at) = find(&bytes[from.min(bytes.len())..], &needle) {
                if let Some(run) = self.run.as_mut() {
                    run.console_pos = from + at + needle.len();
                }
                return Ok(Attempt::Done(()));
            }
            Ok(Attempt::NotYet(format!(
                "last console line: {:?}",
                tail_bytes(&bytes, 1)
            )))
        })
        .with_context(|| format!("wait_for_console_text at {caller}"))
    }

    /// The exact contents of a file in the guest.
    #[track_caller]
    pub fn copy_from_vm(&mut self, path: &str) -> Result<Vec<u8>> {
        let caller = Location::caller();
        let out = self
            .run(&format!("cat -- {}", shell_quote(path)))
            .with_context(|| format!("copy_from_vm at {caller}"))?;
        if out.status != 0 {
            bail!(
                "copy_from_vm at {caller}: cannot read {path} (exit {}): {}",
                out.status,
                out.stderr_text().trim()
            );
        }
        Ok(out.stdout)
    }

    /// Writes `contents` to a file in the guest (created or replaced, mode
    /// from the guest's umask). The contents never appear in logs or errors
    /// (they may be a secret).
    #[track_caller]
    pub fn copy_to_vm(&mut self, path: &str, contents: &[u8]) -> Result<()> {
        use base64::Engine;
        let caller = Location::caller();
        let b64 = base64::engine::general_purpose::STANDARD.encode(contents);
        let command = format!("printf %s {b64} | base64 -d > {}", shell_quote(path));
        let timeout = self.config.command_timeout;
        let start = Instant::now();
        // Only the root cause: the outer contexts quote the command, which
        // holds the contents.
        let out = self
            .run_logged(&command, timeout, false)
            .map_err(|e| anyhow!("copy_to_vm at {caller}: writing {path}: {}", e.root_cause()))?;
        if out.status != 0 {
            bail!(
                "copy_to_vm at {caller}: cannot write {path} (exit {}): {}",
                out.status,
                out.stderr_text().trim()
            );
        }
        self.log.info(format_args!(
            "copy_to_vm {path}: {} bytes in {}",
            contents.len(),
            secs(start.elapsed())
        ));
        Ok(())
    }

    /// Clean power-off: presses the ACPI power button (QMP
    /// `system_powerdown`, again every 10 s) and waits for QEMU to exit. An
    /// error if the guest does not power off within `shutdown_timeout`
    /// (QEMU is killed then). Needs systemd-logind in the guest, as a power
    /// button press on a cloud console does.
    pub fn shutdown(&mut self) -> Result<()> {
        let timeout = self.budget(self.config.shutdown_timeout)?;
        let start = Instant::now();
        let log = self.log.clone();
        let run = self.running().context("shutdown")?;
        let end = start + timeout;
        let mut presses = 0;
        let exited = loop {
            // A press before systemd-logind watches the button is lost (it
            // happens when a test shuts down right after boot), so press
            // again every little while; a press during shutdown is ignored.
            if presses > 0 {
                log.info("no power-off yet: pressing the power button again");
            }
            // QEMU may exit (closing QMP) between two presses.
            if let Err(e) = run.qmp.system_powerdown() {
                match run.qemu.try_wait()? {
                    Some(status) => break Some(status),
                    None => return Err(e).context("shutdown: QMP system_powerdown"),
                }
            }
            presses += 1;
            let left = end.saturating_duration_since(Instant::now());
            if let Some(status) = run.qemu.wait_timeout(left.min(POWER_BUTTON_REPEAT))? {
                break Some(status);
            }
            if Instant::now() >= end {
                break None;
            }
        };
        let serial = tail_bytes(&std::fs::read(&run.serial_log).unwrap_or_default(), 25);
        let run = self.run.take();
        match exited {
            Some(status) if status.success() => {
                self.log.info(format_args!(
                    "powered off cleanly in {}",
                    secs(start.elapsed())
                ));
                Ok(())
            }
            Some(status) => bail!(
                "{}: shutdown: QEMU exited with {status}; serial console (tail):\n{serial}",
                self.config.name
            ),
            None => {
                drop(run);
                bail!(
                    "{}: shutdown: the guest did not power off within {} of the ACPI power button \
                     (is systemd-logind running?); QEMU killed; serial console (tail):\n{serial}",
                    self.config.name,
                    secs(timeout)
                )
            }
        }
    }

    /// Power cut: QEMU quits at once (QMP `quit`); nothing in the guest
    /// gets to flush. The overlay keeps what reached it; boot it again with
    /// [`Machine::power_on`].
    pub fn crash(&mut self) -> Result<()> {
        let run = self.running().context("crash")?;
        let quit = run.qmp.quit();
        let exited = run.qemu.wait_timeout(Duration::from_secs(10))?;
        run.qemu.kill();
        self.run = None;
        quit.context("crash: QMP quit")?;
        self.log.info(match exited {
            Some(status) => format!("crashed (QEMU quit: {status})"),
            None => "crashed (QEMU killed after quit did not end it)".to_string(),
        });
        Ok(())
    }

    /// Clean reboot: [`Machine::shutdown`], then [`Machine::power_on`] —
    /// a new QEMU process (QEMU runs with `-no-reboot`) and a new serial log.
    pub fn reboot(&mut self) -> Result<()> {
        self.shutdown().context("reboot")?;
        self.power_on().context("reboot")
    }
}

/// Text of a command's stdout and stderr (their tails) for error messages.
fn output_report(out: &CommandOutput) -> String {
    let mut s = String::new();
    for (label, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        if !bytes.is_empty() {
            s.push_str(&format!("\n--- {label} ---\n{}", tail_bytes(bytes, 40)));
        }
    }
    s
}

/// The guest script whose output [`UnitState::parse`] reads: the unit's
/// properties, the number of queued jobs, and for a user unit the state of
/// the user's manager (`user@<uid>.service`), which is asked first.
fn unit_probe_script(unit: &str, user: Option<&str>) -> String {
    // Jobs first: a job that finishes between the two reads then shows as
    // an active unit, never as "inactive with nothing queued" (CI saw that
    // race on multi-user.target, 290 ms before it became active).
    let show = format!(
        "echo \"Jobs=$({sc} list-jobs --no-legend | wc -l)\"; \
         {sc} show --property=Id,LoadState,ActiveState,SubState,Result -- {q}",
        sc = systemctl(user),
        q = shell_quote(unit)
    );
    match user {
        None => show,
        Some(u) => format!(
            "m=$(systemctl show --property=ActiveState --value -- user@$(id -u {}).service); \
             echo \"UserManager=$m\"; if [ \"$m\" = active ]; then {show}; fi",
            shell_quote(u)
        ),
    }
}

/// The `systemctl` invocation for the system manager or a user's manager.
fn systemctl(user: Option<&str>) -> String {
    match user {
        None => "systemctl".to_string(),
        Some(u) => format!(
            "runuser -u {q} -- env XDG_RUNTIME_DIR=/run/user/$(id -u {q}) systemctl --user",
            q = shell_quote(u)
        ),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A directory for the unix sockets, short enough for `sun_path` (108 bytes).
fn socket_dir() -> Result<TempDir> {
    let base = std::env::temp_dir();
    let base = if base.as_os_str().len() > 60 {
        PathBuf::from("/tmp")
    } else {
        base
    };
    tempfile::Builder::new()
        .prefix("vmtest-")
        .tempdir_in(&base)
        .with_context(|| format!("creating a socket directory in {}", base.display()))
}

/// A unit's state as `systemctl show` and `list-jobs` report it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnitState {
    /// `LoadState` (loaded, not-found, masked, …).
    pub load: String,
    /// `ActiveState` (active, inactive, activating, failed, …).
    pub active: String,
    /// `SubState` (running, exited, dead, …).
    pub sub: String,
    /// `Result` (success, exit-code, …).
    pub result: String,
    /// Jobs queued in the whole manager (`Jobs=` line), if reported.
    pub jobs: Option<u32>,
    /// For a user unit: `ActiveState` of the user's manager
    /// (`user@<uid>.service`, `UserManager=` line).
    pub user_manager: Option<String>,
}

/// What [`UnitState::verdict`] concludes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitVerdict {
    /// The unit is active.
    Active,
    /// Terminal: it will not become active by waiting (the reason).
    Failed(String),
    /// Still on its way (the current state).
    Pending(String),
}

impl UnitState {
    /// Parses `Key=value` lines of `systemctl show` plus a `Jobs=<n>` line.
    pub fn parse(text: &str) -> Self {
        let mut s = UnitState::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim().to_string();
            match key {
                "LoadState" => s.load = value,
                "ActiveState" => s.active = value,
                "SubState" => s.sub = value,
                "Result" => s.result = value,
                "Jobs" => s.jobs = value.parse().ok(),
                "UserManager" => s.user_manager = Some(value),
                _ => {}
            }
        }
        s
    }

    /// Active, terminal, or pending. Terminal: `failed`; or inactive (or not
    /// found) while the manager has no job queued at all, so nothing will
    /// start it (as the NixOS driver decides).
    pub fn verdict(&self) -> UnitVerdict {
        let state = format!(
            "{} ({}), load state {}, result {}, jobs queued: {}",
            self.active,
            self.sub,
            self.load,
            self.result,
            self.jobs.map_or("?".to_string(), |j| j.to_string())
        );
        match self.user_manager.as_deref() {
            Some("failed") => {
                return UnitVerdict::Failed(
                    "cannot start: the user's manager (user@<uid>.service) failed".into(),
                );
            }
            Some("active") | None => {}
            Some(other) => {
                return UnitVerdict::Pending(format!(
                    "the user's manager is {}",
                    if other.is_empty() {
                        "not loaded"
                    } else {
                        other
                    }
                ));
            }
        }
        match self.active.as_str() {
            "active" | "reloading" | "refreshing" => UnitVerdict::Active,
            "failed" => UnitVerdict::Failed(format!("failed: {state}")),
            "inactive" if self.jobs == Some(0) => {
                if self.load == "loaded" {
                    UnitVerdict::Failed(format!(
                        "is inactive and nothing is queued to start it: {state}"
                    ))
                } else {
                    UnitVerdict::Failed(format!("cannot start: {state}"))
                }
            }
            _ => UnitVerdict::Pending(state),
        }
    }
}

/// The local ports in LISTEN state in `/proc/net/tcp` / `tcp6` text.
pub fn listening_tcp_ports(proc_net_tcp: &str) -> Vec<u16> {
    let mut ports: Vec<u16> = proc_net_tcp
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 4 || fields[3] != "0A" {
                return None;
            }
            let (_, port) = fields[1].rsplit_once(':')?;
            u16::from_str_radix(port, 16).ok()
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_trouble_quotes_the_first_signs() {
        let serial = "[    1.0] systemd[1]: Started foo.service\n\
            [  612.3] traps: PANIC: double fault, error_code: 0x0\n\
            [  612.3] RIP: 0010:kmem_cache_alloc_noprof+0x7c/0x2f0\n\
            [  612.4] Kernel panic - not syncing: Machine halted.\n\
            [  700.0] python3 invoked oom-killer: gfp_mask=0xcc0\n";
        assert_eq!(
            kernel_trouble(serial, 2),
            [
                "[  612.3] traps: PANIC: double fault, error_code: 0x0",
                "[  612.4] Kernel panic - not syncing: Machine halted."
            ]
        );
        assert_eq!(kernel_trouble(serial, 12).len(), 3);
        assert!(kernel_trouble("[ 1.0] all is well\n", 12).is_empty());
    }

    #[test]
    fn kernel_faults_are_the_kernel_own_oopses_not_oom_kills_or_program_output() {
        let serial = "[  300.1] node invoked oom-killer: gfp_mask=0xcc0\n\
            [  300.2] Memory cgroup out of memory: Killed process 42 (node)\n\
            BUG: a program printed this\n\
            [  308.902324] BUG: kernel NULL pointer dereference, address: 0000000000000000\n\
            [  308.903301] Oops: Oops: 0010 [#1] PREEMPT SMP NOPTI\n\
            [  308.904580] note: 16[15789] exited with irqs disabled\n";
        assert_eq!(
            kernel_faults(serial, 8),
            [
                "[  308.902324] BUG: kernel NULL pointer dereference, address: 0000000000000000",
                "[  308.903301] Oops: Oops: 0010 [#1] PREEMPT SMP NOPTI"
            ]
        );
        assert_eq!(kernel_faults(serial, 1).len(), 1);
        assert!(kernel_faults("[  300.1] node invoked oom-killer\n", 8).is_empty());
        // The console interleaves a getty prompt with kernel messages.
        assert_eq!(
            kernel_faults("openclaw login: [   82.328229] BUG: injected\n", 8).len(),
            1
        );
        assert!(kernel_faults("[x] BUG: not a stamp\n[1.2]BUG: no space\n", 8).is_empty());
    }

    #[test]
    fn watch_kernel_errs_once_the_log_shows_a_fault_and_remembers_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("boot1.serial.log");
        std::fs::write(&log, "[    1.000000] all is well\n").unwrap();
        let mut fault = None;
        assert!(watch_kernel(&mut fault, "m", 1, &log).is_ok());
        std::fs::write(&log, "[   95.385467] Oops: double fault: 0000 [#1]\n").unwrap();
        let err = watch_kernel(&mut fault, "m", 1, &log).unwrap_err();
        assert!(err.downcast_ref::<KernelFault>().is_some());
        assert!(
            err.to_string()
                .starts_with("m: the guest kernel faulted on boot 1")
        );
        // Remembered: a log that no longer shows it still fails.
        std::fs::write(&log, "").unwrap();
        assert!(watch_kernel(&mut fault, "m", 1, &log).is_err());
    }

    fn check(show: &str, expected: &str) {
        let got = match UnitState::parse(show).verdict() {
            UnitVerdict::Active => "active",
            UnitVerdict::Failed(_) => "failed",
            UnitVerdict::Pending(_) => "pending",
        };
        assert_eq!(got, expected, "{show}");
    }

    #[test]
    fn unit_verdicts() {
        let s = |load: &str, active: &str, jobs: u32| {
            format!(
                "Id=x.service\nLoadState={load}\nActiveState={active}\nSubState=dead\nResult=success\nJobs={jobs}\n"
            )
        };
        check(&s("loaded", "active", 3), "active");
        check(&s("loaded", "reloading", 0), "active");
        check(&s("loaded", "failed", 5), "failed");
        check(&s("loaded", "activating", 0), "pending");
        check(&s("loaded", "inactive", 2), "pending");
        check(&s("loaded", "inactive", 0), "failed");
        check(&s("not-found", "inactive", 0), "failed");
        check(&s("not-found", "inactive", 1), "pending");
        check("LoadState=loaded\nActiveState=inactive\n", "pending");
        check(
            &format!("UserManager=active\n{}", s("loaded", "active", 0)),
            "active",
        );
        check("UserManager=failed\n", "failed");
        check("UserManager=activating\n", "pending");
        check("UserManager=\n", "pending");
    }

    #[test]
    fn proc_net_tcp_listeners() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue\n\
            0: 0100007F:4965 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1 1\n\
            1: 0100007F:0016 0100007F:9C40 01 00000000:00000000 00:00000000 00000000 0 0 1 1\n\
          sl  local_address                         remote_address                        st\n\
            0: 00000000000000000000000001000000:4965 00000000000000000000000000000000:0000 0A 0\n\
            1: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 0\n";
        assert_eq!(listening_tcp_ports(text), vec![80, 18789]);
        assert!(listening_tcp_ports("").is_empty());
    }

    #[test]
    fn systemctl_for_a_user() {
        assert_eq!(systemctl(None), "systemctl");
        assert_eq!(
            systemctl(Some("openclaw")),
            "runuser -u 'openclaw' -- env XDG_RUNTIME_DIR=/run/user/$(id -u 'openclaw') systemctl --user"
        );
    }

    #[test]
    fn substring_search() {
        assert_eq!(find(b"abc login: x", b"login:"), Some(4));
        assert_eq!(find(b"abc", b"login:"), None);
    }
}
