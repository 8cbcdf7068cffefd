//! The one HTTP client of the builder (lock and fetch only: build stages
//! are offline). TLS roots come from the host's CA bundle (`SSL_CERT_FILE`,
//! else the Debian bundle), so a mirror or a TLS-inspecting proxy that the
//! host trusts works; without a bundle, Mozilla's roots are used.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

/// The Debian/Ubuntu system bundle, used when `SSL_CERT_FILE` is not set.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// CA bundle files the host trusts, in order: `SSL_CERT_FILE`,
/// `NODE_EXTRA_CA_CERTS`, the system bundle. Only existing files.
pub fn host_ca_files() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for var in ["SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS"] {
        if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            out.push(PathBuf::from(v));
        }
    }
    out.push(PathBuf::from(SYSTEM_CA_BUNDLE));
    let mut seen = Vec::new();
    for p in out {
        if p.is_file() && !seen.contains(&p) {
            seen.push(p);
        }
    }
    seen
}

/// A ureq agent trusting the host's CA bundle(s) (`/etc/ssl/certs/ca-certificates.crt`,
/// `SSL_CERT_FILE`, `NODE_EXTRA_CA_CERTS`) instead of only Mozilla's roots,
/// so mirrors and TLS-inspecting proxies the host trusts work.
pub fn agent() -> Result<ureq::Agent> {
    let mut certs = Vec::new();
    for file in host_ca_files() {
        let pem = std::fs::read(&file)
            .with_context(|| format!("reading CA bundle {}", file.display()))?;
        for item in ureq::tls::parse_pem(&pem) {
            if let Ok(ureq::tls::PemItem::Certificate(c)) = item {
                certs.push(c);
            }
        }
    }
    let roots = if certs.is_empty() {
        ureq::tls::RootCerts::WebPki
    } else {
        ureq::tls::RootCerts::new_with_certs(&certs)
    };
    let tls = ureq::tls::TlsConfig::builder().root_certs(roots).build();
    Ok(ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_connect(Some(Duration::from_secs(20)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_recv_body(Some(Duration::from_secs(600)))
        .user_agent("openclaw-image")
        .build()
        .new_agent())
}
