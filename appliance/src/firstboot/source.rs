//! Where the secrets come from, in order: the systemd credential
//! `openclaw.userdata` (QEMU and other hypervisors: SMBIOS type 11 or
//! fw_cfg, imported by the unit's `ImportCredential=openclaw.*`), else the
//! Hetzner metadata service. User-data is never stored anywhere by the
//! agent: a resumed first boot reads it again from its source.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use super::Error;
use super::host::Log;
use super::secret::Secret;
use super::userdata::MAX_BYTES;

/// Credential holding the user-data document.
pub const CREDENTIAL_USERDATA: &str = "openclaw.userdata";
/// Optional credential holding a metadata document (same YAML as Hetzner's),
/// for hypervisors without a metadata service.
pub const CREDENTIAL_METADATA: &str = "openclaw.metadata";
/// Optional credential overriding the metadata service base URL (tests).
pub const CREDENTIAL_METADATA_URL: &str = "openclaw.metadata-url";
/// Environment variable overriding the metadata service base URL (tests).
pub const METADATA_URL_ENV: &str = "OPENCLAW_METADATA_URL";
/// Hetzner's metadata service (plain HTTP, link-local).
pub const DEFAULT_METADATA_URL: &str = "http://169.254.169.254/hetzner/v1";

/// Retries and timeouts for the metadata service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPolicy {
    /// TCP connect timeout per attempt.
    pub connect_timeout: Duration,
    /// Timeout for the response head and for the body, per attempt.
    pub read_timeout: Duration,
    /// No new attempt starts after this much time.
    pub deadline: Duration,
    /// Attempts per document.
    pub max_attempts: u32,
    /// Wait after the first failure; doubles up to `max_backoff`.
    pub first_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
}

impl Default for FetchPolicy {
    /// 2 s connect, 10 s read, 10 attempts with 1‥16 s backoff, 2 min in all.
    fn default() -> Self {
        FetchPolicy {
            connect_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(10),
            deadline: Duration::from_secs(120),
            max_attempts: 10,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(16),
        }
    }
}

/// Where user-data came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The systemd credential `openclaw.userdata`.
    Credential(PathBuf),
    /// The metadata service at this base URL.
    MetadataService(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Credential(_) => write!(f, "systemd credential `{CREDENTIAL_USERDATA}`"),
            Source::MetadataService(url) => write!(f, "metadata service {url}"),
        }
    }
}

/// User-data and (when available) the metadata document, as read.
#[derive(Debug)]
pub struct Acquired {
    /// Where user-data came from.
    pub source: Source,
    /// The raw user-data document.
    pub userdata: Secret,
    /// The raw metadata YAML, if any.
    pub metadata: Option<String>,
}

/// Reads user-data from the credential, else from the metadata service
/// (base URL: credential `openclaw.metadata-url`, else `url_override`, else
/// [`DEFAULT_METADATA_URL`]).
pub fn acquire(
    credentials_dir: Option<&Path>,
    url_override: Option<&str>,
    policy: &FetchPolicy,
    log: &dyn Log,
) -> Result<Acquired, Error> {
    if let Some(dir) = credentials_dir {
        let path = dir.join(CREDENTIAL_USERDATA);
        if path.exists() {
            let userdata = read_limited(&path, CREDENTIAL_USERDATA)?;
            let md_path = dir.join(CREDENTIAL_METADATA);
            let metadata = if md_path.exists() {
                Some(
                    read_limited(&md_path, CREDENTIAL_METADATA)?
                        .expose()
                        .to_string(),
                )
            } else {
                None
            };
            return Ok(Acquired {
                source: Source::Credential(path),
                userdata,
                metadata,
            });
        }
    }
    let from_credential = match credentials_dir.map(|d| d.join(CREDENTIAL_METADATA_URL)) {
        Some(p) if p.exists() => Some(
            read_limited(&p, CREDENTIAL_METADATA_URL)?
                .expose()
                .trim()
                .to_string(),
        ),
        _ => None,
    };
    let base = from_credential
        .or_else(|| url_override.map(str::to_string))
        .unwrap_or_else(|| DEFAULT_METADATA_URL.to_string());
    let base = base.trim_end_matches('/').to_string();
    if !base.starts_with("http://") {
        return Err(Error::Invalid(format!(
            "metadata service URL must start with http:// (got `{base}`)"
        )));
    }
    log.info(&format!(
        "no credential `{CREDENTIAL_USERDATA}`; reading user-data from the metadata service {base}"
    ));
    let http = Http::new(policy);
    let userdata = http
        .get_with_retries(&format!("{base}/userdata"), "user-data", log)
        .map_err(Error::NoUserData)?;
    if userdata.expose().trim().is_empty() {
        return Err(Error::NoUserData(
            "the metadata service returned empty user-data: give the server user-data when creating it (see docs/first-boot.md)".into(),
        ));
    }
    let metadata = match http.get_with_retries(&format!("{base}/metadata"), "metadata", log) {
        Ok(m) => Some(m.expose().to_string()),
        Err(e) => {
            log.warn(&format!(
                "{e}; going on without it (no hostname, public keys or IPv6 from the metadata service)"
            ));
            None
        }
    };
    Ok(Acquired {
        source: Source::MetadataService(base),
        userdata,
        metadata,
    })
}

fn read_limited(path: &Path, name: &str) -> Result<Secret, Error> {
    let bytes = fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if bytes.len() > MAX_BYTES {
        return Err(Error::NoUserData(format!(
            "credential `{name}` is larger than {MAX_BYTES} bytes"
        )));
    }
    String::from_utf8(bytes)
        .map(Secret::new)
        .map_err(|_| Error::NoUserData(format!("credential `{name}` is not UTF-8 text")))
}

struct Http<'a> {
    agent: ureq::Agent,
    policy: &'a FetchPolicy,
}

impl<'a> Http<'a> {
    fn new(policy: &'a FetchPolicy) -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(policy.connect_timeout))
            .timeout_recv_response(Some(policy.read_timeout))
            .timeout_recv_body(Some(policy.read_timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .user_agent("openclaw-firstboot")
            .build();
        Http {
            agent: config.into(),
            policy,
        }
    }

    /// GETs `url` until a 200 answer, a bounded number of times. The body
    /// is returned as a [`Secret`] (user-data is one); error texts never
    /// include a body.
    fn get_with_retries(&self, url: &str, what: &str, log: &dyn Log) -> Result<Secret, String> {
        let start = Instant::now();
        let mut backoff = self.policy.first_backoff;
        let mut last = String::new();
        let mut attempts = 0;
        while attempts < self.policy.max_attempts {
            attempts += 1;
            match self.get_once(url) {
                Ok(body) => return Ok(body),
                Err(e) => last = e,
            }
            log.warn(&format!(
                "{what}: attempt {attempts}/{} failed: {last}",
                self.policy.max_attempts
            ));
            if attempts >= self.policy.max_attempts
                || start.elapsed() + backoff >= self.policy.deadline
            {
                break;
            }
            thread::sleep(backoff);
            backoff = (backoff * 2).min(self.policy.max_backoff);
        }
        Err(format!(
            "{what} not available from {url} after {attempts} attempts in {:.0?}: {last}",
            start.elapsed()
        ))
    }

    fn get_once(&self, url: &str) -> Result<Secret, String> {
        let mut resp = self.agent.get(url).call().map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(format!("HTTP {status}"));
        }
        resp.body_mut()
            .with_config()
            .limit(MAX_BYTES as u64)
            .read_to_string()
            .map(Secret::new)
            .map_err(|e| format!("reading the body: {e}"))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::firstboot::tests::MemLog;

    /// One scripted answer of the stand-in metadata service.
    #[derive(Clone)]
    pub(crate) enum Reply {
        Ok(String),
        Status(u16),
        /// Accept, read the request, never answer.
        Hang,
    }

    /// A metadata service on 127.0.0.1:0 that answers each path from its
    /// script (last entry repeats) and records the paths requested.
    pub(crate) struct Server {
        pub(crate) base: String,
        pub(crate) requests: Arc<Mutex<Vec<String>>>,
    }

    impl Server {
        pub(crate) fn start(userdata: Vec<Reply>, metadata: Vec<Reply>) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let base = format!("http://{}/hetzner/v1", listener.local_addr().expect("addr"));
            let requests = Arc::new(Mutex::new(Vec::new()));
            let seen = Arc::clone(&requests);
            std::thread::spawn(move || {
                let (mut ud_i, mut md_i) = (0usize, 0usize);
                // Bounded: the test process ends the thread; at most 64 requests.
                for stream in listener.incoming().take(64) {
                    let Ok(stream) = stream else { continue };
                    let Some(path) = request_path(&stream) else {
                        continue;
                    };
                    seen.lock().expect("lock").push(path.clone());
                    let reply = if path.ends_with("/userdata") {
                        ud_i += 1;
                        userdata[(ud_i - 1).min(userdata.len() - 1)].clone()
                    } else if path.ends_with("/metadata") {
                        md_i += 1;
                        metadata[(md_i - 1).min(metadata.len() - 1)].clone()
                    } else {
                        Reply::Status(404)
                    };
                    respond(stream, reply);
                }
            });
            Server { base, requests }
        }

        pub(crate) fn paths(&self) -> Vec<String> {
            self.requests.lock().map(|r| r.clone()).unwrap_or_default()
        }
    }

    fn request_path(stream: &TcpStream) -> Option<String> {
        let mut reader = BufReader::new(stream.try_clone().ok()?);
        let mut first = String::new();
        reader.read_line(&mut first).ok()?;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).ok()? == 0 || line == "\r\n" {
                break;
            }
        }
        first.split_whitespace().nth(1).map(str::to_string)
    }

    fn respond(mut stream: TcpStream, reply: Reply) {
        let (status, body) = match reply {
            Reply::Ok(body) => (200, body),
            Reply::Status(s) => (s, String::new()),
            Reply::Hang => {
                std::thread::spawn(move || {
                    let mut sink = [0u8; 64];
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    let _ = stream.read(&mut sink);
                });
                return;
            }
        };
        let _ = write!(
            stream,
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }

    pub(crate) fn fast() -> FetchPolicy {
        FetchPolicy {
            connect_timeout: Duration::from_millis(500),
            read_timeout: Duration::from_millis(200),
            deadline: Duration::from_secs(5),
            max_attempts: 4,
            first_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
        }
    }

    #[test]
    fn retries_until_the_service_answers() {
        let server = Server::start(
            vec![
                Reply::Status(404),
                Reply::Status(500),
                Reply::Ok("#ud".into()),
            ],
            vec![Reply::Ok("hostname: h\n".into())],
        );
        let log = MemLog::default();
        let got = acquire(None, Some(&server.base), &fast(), &log).unwrap();
        assert_eq!(got.userdata.expose(), "#ud");
        assert_eq!(got.metadata.as_deref(), Some("hostname: h\n"));
        assert_eq!(got.source, Source::MetadataService(server.base.clone()));
        assert_eq!(
            server.paths(),
            vec![
                "/hetzner/v1/userdata",
                "/hetzner/v1/userdata",
                "/hetzner/v1/userdata",
                "/hetzner/v1/metadata"
            ]
        );
        assert_eq!(log.count("attempt"), 2);
    }

    #[test]
    fn gives_up_after_bounded_attempts() {
        let server = Server::start(vec![Reply::Status(404)], vec![Reply::Status(404)]);
        let log = MemLog::default();
        let t = Instant::now();
        let err = acquire(None, Some(&server.base), &fast(), &log).unwrap_err();
        assert!(matches!(err, Error::NoUserData(_)), "{err}");
        assert!(err.to_string().contains("after 4 attempts"), "{err}");
        assert_eq!(server.paths().len(), 4);
        assert!(t.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn read_timeouts_are_retried_and_bounded() {
        let server = Server::start(
            vec![Reply::Hang, Reply::Ok("#ud".into())],
            vec![Reply::Hang],
        );
        let log = MemLog::default();
        let t = Instant::now();
        let got = acquire(None, Some(&server.base), &fast(), &log).unwrap();
        assert_eq!(got.userdata.expose(), "#ud");
        // Metadata never answers: first boot goes on without it.
        assert!(got.metadata.is_none());
        assert!(log.count("going on without it") == 1);
        assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    }

    #[test]
    fn deadline_stops_retries() {
        let server = Server::start(vec![Reply::Status(503)], vec![Reply::Status(503)]);
        let policy = FetchPolicy {
            max_attempts: 100,
            deadline: Duration::from_millis(300),
            first_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(50),
            ..fast()
        };
        let log = MemLog::default();
        let err = acquire(None, Some(&server.base), &policy, &log).unwrap_err();
        assert!(matches!(err, Error::NoUserData(_)));
        assert!(server.paths().len() < 10, "{}", server.paths().len());
    }

    #[test]
    fn empty_userdata_fails_closed() {
        let server = Server::start(vec![Reply::Ok("  \n".into())], vec![Reply::Status(404)]);
        let err = acquire(None, Some(&server.base), &fast(), &MemLog::default()).unwrap_err();
        assert!(err.to_string().contains("empty user-data"), "{err}");
    }

    #[test]
    fn credential_comes_first_and_url_is_overridable() {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(
            vec![Reply::Ok("#from-http".into())],
            vec![Reply::Status(404)],
        );
        // Only the URL credential: user-data comes from that URL.
        fs::write(
            dir.path().join(CREDENTIAL_METADATA_URL),
            format!("{}\n", server.base),
        )
        .unwrap();
        let got = acquire(
            Some(dir.path()),
            Some("http://127.0.0.1:9/unused"),
            &fast(),
            &MemLog::default(),
        )
        .unwrap();
        assert_eq!(got.userdata.expose(), "#from-http");
        // With the user-data credential, no request is made.
        fs::write(dir.path().join(CREDENTIAL_USERDATA), "#from-credential").unwrap();
        fs::write(dir.path().join(CREDENTIAL_METADATA), "hostname: x\n").unwrap();
        let before = server.paths().len();
        let got = acquire(Some(dir.path()), None, &fast(), &MemLog::default()).unwrap();
        assert_eq!(got.userdata.expose(), "#from-credential");
        assert_eq!(got.metadata.as_deref(), Some("hostname: x\n"));
        assert!(matches!(got.source, Source::Credential(_)));
        assert_eq!(server.paths().len(), before);
    }

    #[test]
    fn only_plain_http_urls() {
        let err = acquire(
            None,
            Some("https://example.invalid"),
            &fast(),
            &MemLog::default(),
        )
        .unwrap_err();
        assert!(matches!(err, Error::Invalid(_)));
    }
}
