//! `openclaw-firstboot`: the appliance's first-boot agent, run once by
//! `openclaw-firstboot.service` (see `appliance::firstboot`).
//!
//! Usage:
//!   openclaw-firstboot                       run first boot
//!   openclaw-firstboot --metadata-firewall   only close the metadata service (SEC-5), for the boot-time unit
//!   openclaw-firstboot --state-volume        mount the state volume and bind durable state from it (UPD-1..4), every boot
//!
//! Exit codes: 0 done (or already done); 1 first boot failed; 2 user-data
//! missing or invalid (fail closed: nothing written); 64 bad usage.

use std::path::PathBuf;
use std::process::ExitCode;

use appliance::firstboot::{
    Agent, FetchPolicy, Layout, Log, METADATA_URL_ENV, Outcome, StderrLog, SystemRunner,
    apply_metadata_firewall,
};

const USAGE: &str = "usage: openclaw-firstboot [--metadata-firewall | --state-volume]\n\
    \n\
    Without arguments: run the appliance's first boot (secrets from the systemd credential\n\
    `openclaw.userdata` or the Hetzner metadata service). With --metadata-firewall: only\n\
    close the metadata service to non-root users and containers (SEC-5) and container\n\
    traffic to the tailnet and private ranges (LAT-1). With --state-volume: find the Hetzner\n\
    Volume, format it if blank, mount it and bind OpenClaw's and Tailscale's state from it;\n\
    a volume with foreign data is never written (UPD-1..4).\n\
    Exit codes: 0 done, 1 failed, 2 user-data missing or invalid, 64 usage.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let log = StderrLog::from_env();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => first_boot(&log),
        ["--metadata-firewall"] => match apply_metadata_firewall(&SystemRunner) {
            Ok(n) => {
                log.info(&format!(
                    "metadata service closed to non-root users and containers, container egress to private ranges closed ({n} rule(s) added)"
                ));
                ExitCode::SUCCESS
            }
            Err(e) => {
                log.error(&e.to_string());
                ExitCode::FAILURE
            }
        },
        ["--state-volume"] => state_volume(&log),
        ["--help"] | ["-h"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(64)
        }
    }
}

fn agent(log: &StderrLog) -> Agent<'_> {
    Agent {
        layout: Layout::system(),
        credentials_dir: std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from),
        metadata_url: std::env::var(METADATA_URL_ENV).ok(),
        fetch: FetchPolicy::default(),
        runner: &SystemRunner,
        log,
    }
}

fn first_boot(log: &StderrLog) -> ExitCode {
    match agent(log).run() {
        Ok(Outcome::AlreadyDone | Outcome::Completed) => ExitCode::SUCCESS,
        Err(e) => {
            for line in e.report() {
                log.error(&line);
            }
            ExitCode::from(e.exit_code())
        }
    }
}

fn state_volume(log: &StderrLog) -> ExitCode {
    match agent(log).state_volume() {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            log.error(&e.to_string());
            log.error(
                "state volume FAILED: tailscaled, first boot, the OpenClaw gateway and the workspace \
                 sync stay down (they require openclaw-state-volume.service); \
                 `journalctl -u openclaw-state-volume`, docs/hetzner.md",
            );
            ExitCode::FAILURE
        }
    }
}
