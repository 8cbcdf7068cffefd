//! A stand-in for the Hetzner metadata service: plain HTTP on
//! 169.254.169.254:80 inside the infrastructure namespace, serving
//! `/hetzner/v1/userdata` and `/hetzner/v1/metadata`, and recording every
//! request (path and client address, never a body).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};

use super::probe::enter;

/// The user-data path.
pub const USERDATA_PATH: &str = "/hetzner/v1/userdata";
/// The metadata document path.
pub const METADATA_PATH: &str = "/hetzner/v1/metadata";

/// Longest request head read.
const MAX_HEAD: usize = 8 * 1024;

/// One request the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataRequest {
    /// Request method (`GET`, …).
    pub method: String,
    /// Request path, query string removed.
    pub path: String,
    /// The client.
    pub peer: SocketAddr,
    /// The HTTP status answered.
    pub status: u16,
    /// When it arrived.
    pub at: Instant,
}

/// What the server serves; changeable while it runs.
#[derive(Clone, Default)]
pub(crate) struct Documents {
    /// `None`: `/userdata` answers 404 (a server created without user-data).
    pub userdata: Option<Vec<u8>>,
    /// `None`: `/metadata` answers 404.
    pub metadata: Option<String>,
}

impl std::fmt::Debug for Documents {
    /// Sizes only: user-data holds secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Documents")
            .field("userdata_len", &self.userdata.as_ref().map(Vec::len))
            .field("metadata_len", &self.metadata.as_ref().map(String::len))
            .finish()
    }
}

/// The running server. Dropping it stops the thread.
#[derive(Debug)]
pub(crate) struct MetadataServer {
    pub(crate) docs: Arc<Mutex<Documents>>,
    pub(crate) requests: Arc<Mutex<Vec<MetadataRequest>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetadataServer {
    /// Binds `addr` inside the namespace `ns` and serves until dropped.
    pub(crate) fn start(ns: &Path, addr: SocketAddr, docs: Documents) -> Result<MetadataServer> {
        let docs = Arc::new(Mutex::new(docs));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel::<Result<()>>();
        let ns = ns.to_path_buf();
        let (docs2, requests2, stop2) =
            (Arc::clone(&docs), Arc::clone(&requests), Arc::clone(&stop));
        let thread = thread::Builder::new()
            .name("vmtest-metadata".into())
            .spawn(move || {
                let bound = enter(&ns).and_then(|()| {
                    let l = TcpListener::bind(addr)
                        .with_context(|| format!("binding the metadata service on {addr}"))?;
                    l.set_nonblocking(true)
                        .context("making the metadata listener non-blocking")?;
                    Ok(l)
                });
                let listener = match bound {
                    Ok(l) => {
                        let _ = tx.send(Ok(()));
                        l
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                while !stop2.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, peer)) => {
                            if let Some(req) = serve(stream, peer, &docs2)
                                && let Ok(mut r) = requests2.lock()
                            {
                                r.push(req);
                            }
                        }
                        Err(_) => thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
            .context("spawning the metadata service thread")?;
        rx.recv_timeout(Duration::from_secs(10))
            .map_err(|_| anyhow!("the metadata service thread did not start"))??;
        Ok(MetadataServer {
            docs,
            requests,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for MetadataServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers one connection; `None` when no request could be read.
fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    docs: &Mutex<Documents>,
) -> Option<MetadataRequest> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .ok()?;
    let head = read_head(&mut stream).ok()?;
    let (method, path) = parse_request_line(&head)?;
    let docs = docs.lock().map(|d| d.clone()).unwrap_or_default();
    let (status, body) = route(&method, &path, &docs);
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Method Not Allowed",
    };
    let mut response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        response.extend_from_slice(&body);
    }
    let _ = stream.write_all(&response);
    let _ = stream.flush();
    Some(MetadataRequest {
        method,
        path,
        peer,
        status,
        at: Instant::now(),
    })
}

/// Reads until the end of the request head (`\r\n\r\n`), at most [`MAX_HEAD`].
fn read_head(stream: &mut impl Read) -> io::Result<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// The method and path (query removed) of an HTTP request head.
pub(crate) fn parse_request_line(head: &str) -> Option<(String, String)> {
    let line = head.lines().next()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?;
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    let path = target
        .split(['?', '#'])
        .next()
        .unwrap_or(target)
        .to_string();
    Some((method, path))
}

/// The status and body for a request.
pub(crate) fn route(method: &str, path: &str, docs: &Documents) -> (u16, Vec<u8>) {
    if method != "GET" && method != "HEAD" {
        return (405, b"method not allowed\n".to_vec());
    }
    let found = match path.trim_end_matches('/') {
        USERDATA_PATH => docs.userdata.clone(),
        METADATA_PATH => docs.metadata.clone().map(String::into_bytes),
        _ => None,
    };
    match found {
        Some(body) => (200, body),
        None => (404, b"not found\n".to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs() -> Documents {
        Documents {
            userdata: Some(b"#openclaw-appliance-userdata v1\n".to_vec()),
            metadata: Some("hostname: vm\n".into()),
        }
    }

    #[test]
    fn request_lines() {
        assert_eq!(
            parse_request_line("GET /hetzner/v1/userdata HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(("GET".into(), "/hetzner/v1/userdata".into()))
        );
        assert_eq!(
            parse_request_line("GET /a?b=c HTTP/1.0\r\n\r\n"),
            Some(("GET".into(), "/a".into()))
        );
        assert_eq!(parse_request_line("garbage\r\n\r\n"), None);
        assert_eq!(parse_request_line(""), None);
    }

    #[test]
    fn routes() {
        let d = docs();
        assert_eq!(route("GET", USERDATA_PATH, &d).0, 200);
        assert_eq!(
            route("GET", USERDATA_PATH, &d).1,
            d.userdata.clone().unwrap()
        );
        assert_eq!(
            route("GET", METADATA_PATH, &d),
            (200, b"hostname: vm\n".to_vec())
        );
        assert_eq!(route("GET", "/hetzner/v1/metadata/hostname", &d).0, 404);
        assert_eq!(route("POST", USERDATA_PATH, &d).0, 405);
        let empty = Documents::default();
        assert_eq!(route("GET", USERDATA_PATH, &empty).0, 404);
    }

    #[test]
    fn debug_hides_userdata() {
        let text = format!("{:?}", docs());
        assert!(!text.contains("openclaw-appliance-userdata"), "{text}");
    }

    #[test]
    #[ignore = "needs root (setns); run as root with cargo test -p vm-tests --lib serves_over_tcp_in_own_namespace -- --ignored (`cargo xtask ci` does as root)"]
    fn serves_over_tcp_in_own_namespace() {
        // The server in the test's own namespace (a path to it is enough:
        // setns into one's own namespace is allowed for root only, so use
        // the calling thread's namespace file only when running as root).
        // SAFETY: geteuid has no preconditions.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "serves_over_tcp_in_own_namespace needs root (setns): run it as root"
        );
        let ns = Path::new("/proc/self/ns/net");
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let server = MetadataServer::start(ns, addr, docs()).unwrap();
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /hetzner/v1/metadata HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nhostname: vm\n"), "{answer}");
        // The server records a request after answering it: wait for the record.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let reqs = loop {
            let reqs = server.requests.lock().unwrap().clone();
            if !reqs.is_empty() || std::time::Instant::now() > deadline {
                break reqs;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].path, METADATA_PATH);
        assert_eq!(reqs[0].status, 200);
    }
}
