//! The checks, one function per invariant, grouped by area. Each returns
//! an [`Outcome`]; an `Err` means the check itself broke and is reported as
//! a failure with the error chain.

pub mod agt;
pub mod esc;
pub mod esc_sync;
pub mod external;
pub mod net;
pub mod sec;
pub mod srv;
pub mod sup;
pub mod ts;
pub mod upd;

use std::path::PathBuf;

use anyhow::Result;
use hostutil::shell_quote;

use super::report::Outcome;
use crate::machine::Machine;

/// A check: proves one invariant on the context.
pub type Check = fn(&mut Ctx<'_>) -> Result<Outcome>;

/// Secrets injected by the harness for this run (generated per run).
#[derive(Clone)]
pub struct Secrets {
    /// The gateway token.
    pub gateway_token: String,
    /// The Anthropic setup token.
    pub anthropic_token: String,
    /// The Tailscale auth key (only meaningful with Tailscale in the image).
    pub tailscale_key: String,
    /// The workspace deploy key (INF-2), when this run configures workspace sync.
    pub deploy_key: Option<crate::net::git_remote::DeployKey>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(<redacted>)")
    }
}

impl Secrets {
    /// Every secret with a name, for scans (SEC-3). The deploy key is
    /// represented by the line of it that holds the private seed.
    pub fn all(&self) -> Vec<(&'static str, &str)> {
        let mut all = vec![
            ("gateway-token", self.gateway_token.as_str()),
            ("anthropic-setup-token", &self.anthropic_token),
            ("tailscale-auth-key", &self.tailscale_key),
        ];
        if let Some(key) = &self.deploy_key {
            all.push(("workspace-deploy-key", key.needle()));
        }
        all
    }

    /// `text` with every secret replaced by `<redacted NAME>`, for logs the
    /// harness keeps from the guest.
    pub fn redact(&self, text: &str) -> String {
        self.all()
            .into_iter()
            .filter(|(_, value)| !value.is_empty())
            .fold(text.to_string(), |t, (name, value)| {
                t.replace(value, &format!("<redacted {name}>"))
            })
    }
}

/// Facts about the image under test, read from its manifest and spec.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The raw image under test.
    pub image: PathBuf,
    /// Its manifest (beside it), parsed.
    pub manifest: serde_json::Value,
    /// Whether Tailscale is in the image.
    pub tailscale: bool,
    /// Whether the spec turned OpenSSH on (`features.openssh`): the
    /// manifest lists its package in the host set (SSH-1, SSH-2).
    pub openssh: bool,
    /// The gateway user.
    pub user: String,
    /// The gateway port.
    pub port: u16,
    /// The sandbox image reference.
    pub sandbox_image: String,
    /// Where this run writes logs.
    pub out_dir: PathBuf,
    /// Firmware label of this pass (`bios`, `uefi`).
    pub firmware: String,
    /// Whether this is the primary pass (every ID), not a secondary one
    /// that proves only the firmware-dependent part of an invariant.
    pub primary: bool,
    /// Where the main machine's first boot takes its secrets from: the
    /// metadata service (`true`) or a systemd credential.
    pub secrets_via_metadata: bool,
    /// SEC-1's scan of the raw image, made before the machine booted
    /// (`None`: not made; `Err`: it broke, with why).
    pub raw_scan: Option<std::result::Result<sec::RawScan, String>>,
    /// UPD-2's second image, when the run has one.
    pub image_b: Option<PathBuf>,
}

impl Facts {
    /// Whether `manifest` lists the Debian package `name` in the host's
    /// root filesystem (the `host` set).
    pub fn manifest_has_host_package(manifest: &serde_json::Value, name: &str) -> bool {
        manifest
            .get("debian_packages")
            .and_then(serde_json::Value::as_array)
            .is_some_and(|debs| {
                debs.iter().any(|d| {
                    d.get("name").and_then(serde_json::Value::as_str) == Some(name)
                        && d.get("sets")
                            .and_then(serde_json::Value::as_array)
                            .is_some_and(|s| s.iter().any(|x| x == "host"))
                })
            })
    }

    /// A string of the image's manifest by JSON pointer ("" when absent).
    pub fn manifest_str(&self, pointer: &str) -> String {
        self.manifest
            .pointer(pointer)
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
            .to_string()
    }

    /// The raw image's size in bytes (0 if unknown).
    pub fn manifest_disk_bytes(&self) -> u64 {
        std::fs::metadata(&self.image).map(|m| m.len()).unwrap_or(0)
    }
}

/// What a check can use.
pub struct Ctx<'a> {
    /// The running machine (first boot done).
    pub machine: &'a mut Machine,
    /// Facts about the image.
    pub facts: &'a Facts,
    /// The secrets injected at first boot.
    pub secrets: &'a Secrets,
    /// The external peer network, when the host could create it.
    pub net: Option<&'a crate::net::TestNet>,
    /// The test tailnet (TS-1, NET-5, NET-8, SSH-3), when it started.
    pub tailnet: Option<&'a crate::net::tailnet::TestTailnet>,
    /// The workspace git remote the user-data names (INF-2), when this run
    /// configures workspace sync.
    pub git_remote: Option<&'a crate::net::git_remote::GitRemote>,
    /// Notes for the report (audit counts, scores).
    pub notes: &'a mut Vec<String>,
    /// A config to start further machines from (SEC-2, SEC-4): same image,
    /// firmware and accelerator, no credentials.
    pub template: &'a crate::machine::MachineConfig,
}

impl Ctx<'_> {
    /// An extra machine of the run (SEC-2, SEC-4): the template with
    /// `name` and `credentials`, one vCPU, and the sandbox image load
    /// skipped (minutes under TCG, not what these cases are about); on the
    /// test network's side tap when there is one, so that its first boot
    /// reaches the test tailnet as the main machine's did.
    pub fn side_config(
        &self,
        name: &str,
        credentials: Vec<crate::credential::Credential>,
    ) -> Result<crate::machine::MachineConfig> {
        let mut cfg = self.template.clone();
        cfg.name = format!("{}-{name}", self.facts.firmware);
        cfg.cpus = 1;
        if let Some(net) = self.net {
            cfg.extra_args = net.side_qemu_args();
        }
        cfg.credentials
            .push(crate::suite::run::skip_sandbox_load()?);
        cfg.credentials.extend(credentials);
        Ok(cfg)
    }

    /// Runs `f` on a fresh machine started from `cfg`, shut down afterwards.
    /// With `pause_main`, the main machine's CPUs are stopped meanwhile
    /// (QMP `stop`/`cont`), so that two emulated guests do not starve each
    /// other on a small host.
    pub fn with_side_machine<T>(
        &mut self,
        cfg: crate::machine::MachineConfig,
        pause_main: bool,
        f: impl FnOnce(&mut Machine) -> Result<T>,
    ) -> Result<T> {
        let paused = pause_main && self.machine.is_running();
        if paused {
            self.machine.pause()?;
        }
        let result = Machine::start(cfg).and_then(|mut m| {
            let r = f(&mut m);
            let _ = m.shutdown();
            r
        });
        if paused {
            self.machine.resume()?;
        }
        result
    }
}

/// Pass when `cond`, else fail; the detail says what was seen.
pub fn expect(cond: bool, seen: impl Into<String>) -> Outcome {
    if cond {
        Outcome::Pass(seen.into())
    } else {
        Outcome::Fail(seen.into())
    }
}

/// First boot's done marker on the root disk (SEC-4): written when first
/// boot has completed; the gateway starts only after it.
pub const FIRSTBOOT_DONE: &str = "/var/lib/openclaw-appliance/firstboot.done";

/// The gateway's system unit (SRV-1).
pub const GATEWAY_UNIT: &str = "openclaw-gateway.service";

/// Runs a shell command as the gateway user, in its home: the guest shell's
/// own working directory is `/root`, which the user cannot enter, and
/// OpenClaw spawns children there. The environment is the harness shell's
/// (`DOCKER_HOST` included: the sandbox daemon the gateway uses too).
pub fn as_user(ctx: &Ctx<'_>, cmd: &str) -> String {
    as_named_user(&ctx.facts.user, cmd)
}

/// [`as_user`] for `user` (an extra machine's gateway user).
pub fn as_named_user(user: &str, cmd: &str) -> String {
    format!(
        "cd /home/{user} && runuser -u {user} -- env HOME=/home/{user} bash -c {q}",
        q = shell_quote(cmd)
    )
}

#[cfg(test)]
mod tests {
    use super::Secrets;

    #[test]
    fn redact_replaces_every_secret_by_its_name() {
        let s = Secrets {
            gateway_token: "gw-123".into(),
            anthropic_token: "sk-ant-456".into(),
            tailscale_key: String::new(),
            deploy_key: None,
        };
        let text = "token=gw-123 env ANTHROPIC=sk-ant-456 again gw-123";
        let out = s.redact(text);
        assert_eq!(
            out,
            "token=<redacted gateway-token> env ANTHROPIC=<redacted anthropic-setup-token> \
             again <redacted gateway-token>"
        );
        assert!(!out.contains("gw-123") && !out.contains("sk-ant-456"));
    }
}
