//! Where inputs come from: flags first, then the spec, then the host's configuration.

use std::path::Path;

use anyhow::Result;
use image_spec::Spec;
use image_spec::lock::Lock;

use crate::debian::mirror::{Archives, host_archives};
use crate::store::Input;

/// Overrides given on the command line.
#[derive(Debug, Clone, Default)]
pub struct SourceFlags {
    /// `--mirror`
    pub mirror: Option<String>,
    /// `--security-mirror`
    pub security_mirror: Option<String>,
    /// `--npm-registry`
    pub npm_registry: Option<String>,
}

/// The Debian archive roots: flag, else spec, else the host's apt sources.
pub fn archives(spec: &Spec, flags: &SourceFlags) -> Result<Archives> {
    let mirror = flags.mirror.clone().or_else(|| spec.debian.mirror.clone());
    let security = flags
        .security_mirror
        .clone()
        .or_else(|| spec.debian.security_mirror.clone());
    match (mirror, security) {
        (Some(debian), Some(security)) => Ok(Archives { debian, security }),
        (m, s) => {
            let host = host_archives(Path::new("/etc/apt"))?;
            Ok(Archives {
                debian: m.unwrap_or(host.debian),
                security: s.unwrap_or(host.security),
            })
        }
    }
}

/// Every fixed-output input of a lock, with its download URL.
pub fn locked_inputs(lock: &Lock, archives: &Archives, npm_registry: &str) -> Vec<Input> {
    let mut inputs: Vec<Input> = lock
        .debs
        .iter()
        .map(|d| {
            let root = if d.archive == "debian-security" {
                &archives.security
            } else {
                &archives.debian
            };
            Input {
                name: d.file_name().to_string(),
                url: Some(format!("{}/{}", root.trim_end_matches('/'), d.filename)),
                sha256: d.sha256.clone(),
                size: Some(d.size),
            }
        })
        .collect();
    inputs.extend(crate::npm::inputs(
        npm_registry,
        &lock.node,
        &lock.openclaw.npm,
    ));
    inputs.extend(tailscale_input(lock));
    inputs
}

/// The Tailscale static tarball, when the lock's source is the tarball
/// (unreachable from some build hosts: `--input-dir`). A source build's Go
/// modules are fetched by `gomod::store::ModuleStore::fetch`.
pub fn tailscale_input(lock: &Lock) -> Option<Input> {
    let (Some(url), Some(sha256)) = (&lock.tailscale.url, &lock.tailscale.sha256) else {
        return None;
    };
    let name = url
        .rsplit('/')
        .next()
        .unwrap_or("tailscale.tgz")
        .to_string();
    Some(Input {
        name,
        url: Some(url.clone()),
        sha256: sha256.clone(),
        size: None,
    })
}
