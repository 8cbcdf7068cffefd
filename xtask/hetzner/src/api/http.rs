//! The HTTP agent: TLS roots from the host's CA bundle (`SSL_CERT_FILE`,
//! else the Debian bundle), so a TLS-inspecting proxy the host trusts works;
//! Mozilla's roots when the host has none. Non-2xx answers are not errors
//! here: the client reads their error envelope.

use std::time::Duration;

/// CA bundles the host trusts: `SSL_CERT_FILE`, then the system bundle.
fn ca_bundles() -> Vec<std::path::PathBuf> {
    let env = std::env::var_os("SSL_CERT_FILE").filter(|v| !v.is_empty());
    env.into_iter()
        .map(Into::into)
        .chain([std::path::PathBuf::from(
            "/etc/ssl/certs/ca-certificates.crt",
        )])
        .filter(|p| p.is_file())
        .collect()
}

/// The agent every API call goes through.
pub(super) fn agent(timeout: Duration) -> Result<ureq::Agent, String> {
    let mut certs = Vec::new();
    for file in ca_bundles() {
        let pem = std::fs::read(&file).map_err(|e| format!("reading {}: {e}", file.display()))?;
        certs.extend(ureq::tls::parse_pem(&pem).filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
            _ => None,
        }));
    }
    let roots = match certs.is_empty() {
        true => ureq::tls::RootCerts::WebPki,
        false => ureq::tls::RootCerts::new_with_certs(&certs),
    };
    Ok(ureq::Agent::config_builder()
        .tls_config(ureq::tls::TlsConfig::builder().root_certs(roots).build())
        .http_status_as_error(false)
        .timeout_connect(Some(timeout.min(Duration::from_secs(20))))
        .timeout_global(Some(timeout))
        .user_agent("openclaw-image-upload")
        .build()
        .new_agent())
}
