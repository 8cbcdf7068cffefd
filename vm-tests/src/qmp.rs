//! A minimal QMP (QEMU Machine Protocol) client for power control.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

use crate::log::Log;

/// How long one QMP command may take to answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(15);

/// A QMP connection in command mode.
#[derive(Debug)]
pub struct Qmp {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    log: Log,
}

impl Qmp {
    /// Connects to QEMU's QMP socket (retrying until it exists, for up to
    /// `timeout`), reads the greeting and enters command mode.
    pub fn connect(path: &Path, timeout: Duration, log: &Log) -> Result<Self> {
        let end = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= end => {
                    return Err(e)
                        .with_context(|| format!("connecting to QMP socket {}", path.display()));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        stream
            .set_read_timeout(Some(REPLY_TIMEOUT))
            .context("setting the QMP read timeout")?;
        let reader = BufReader::new(stream.try_clone().context("cloning the QMP socket")?);
        let mut qmp = Qmp {
            writer: stream,
            reader,
            log: log.clone(),
        };
        let greeting = qmp.read_message().context("reading the QMP greeting")?;
        if greeting.get("QMP").is_none() {
            bail!("unexpected QMP greeting: {greeting}");
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    fn read_message(&mut self) -> Result<Value> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .context("reading from QMP")?;
        if n == 0 {
            bail!("QMP connection closed (QEMU exited)");
        }
        serde_json::from_str(&line).with_context(|| format!("parsing QMP message {line:?}"))
    }

    /// Runs a QMP command and returns its `return` value. Asynchronous
    /// events received meanwhile are logged and skipped.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value> {
        let mut msg = json!({ "execute": command });
        if let Some(args) = arguments {
            msg["arguments"] = args;
        }
        let mut bytes = serde_json::to_vec(&msg).context("encoding a QMP command")?;
        bytes.push(b'\n');
        self.writer
            .write_all(&bytes)
            .with_context(|| format!("sending QMP command {command}"))?;
        loop {
            let reply = self
                .read_message()
                .with_context(|| format!("waiting for the reply to QMP command {command}"))?;
            if let Some(ret) = reply.get("return") {
                return Ok(ret.clone());
            }
            if let Some(err) = reply.get("error") {
                return Err(anyhow!("QMP command {command} failed: {err}"));
            }
            match reply.get("event").and_then(Value::as_str) {
                Some("RTC_CHANGE") | None => {}
                Some(event) => self.log.info(format_args!("QMP event {event}")),
            }
        }
    }

    /// `system_powerdown`: presses the ACPI power button (the guest should
    /// shut down cleanly).
    pub fn system_powerdown(&mut self) -> Result<()> {
        self.execute("system_powerdown", None).map(drop)
    }

    /// `system_reset`: the reset button (no clean shutdown). With
    /// `-no-reboot`, QEMU exits instead of resetting.
    pub fn system_reset(&mut self) -> Result<()> {
        self.execute("system_reset", None).map(drop)
    }

    /// `quit`: QEMU exits at once — for the guest, a power cut. The
    /// connection may close before the reply; that counts as success.
    pub fn quit(&mut self) -> Result<()> {
        match self.execute("quit", None) {
            Ok(_) => Ok(()),
            Err(e) if format!("{e:#}").contains("connection closed") => Ok(()),
            Err(e) => Err(e),
        }
    }
}
