//! A small client for the part of the Hetzner Cloud API the upload uses.
//!
//! Every call sends the token as a bearer header, answers with typed values
//! ([`types`]), turns the error envelope `{"error":{"code","message","details"}}`
//! into an [`ApiError`], retries by hcloud-go's rules ([`retry`]: `locked`,
//! `conflict`, `rate_limit_exceeded`, `bad_gateway`, `timeout`, 429/502/504,
//! network timeouts of `GET`/`DELETE`; jittered backoff, `Retry-After` and
//! `RateLimit-Reset` honoured), follows `meta.pagination.next_page`, and
//! polls actions through `GET /actions?id=…` ([`Client::wait_for`]). With
//! [`ClientOptions::debug`] each call is logged (never the token).

mod actions;
mod error;
mod http;
mod resources;
pub mod retry;
pub mod types;

use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde_json::Value;

pub use error::ApiError;

use crate::Token;

/// The public API, used when `HCLOUD_ENDPOINT` is not set (as by `hcloud`).
pub const DEFAULT_ENDPOINT: &str = "https://api.hetzner.cloud/v1";

/// The environment variable naming another endpoint (a proxy, a stand-in).
pub const ENDPOINT_VAR: &str = "HCLOUD_ENDPOINT";

/// The endpoint: `HCLOUD_ENDPOINT`, else the public API.
pub fn endpoint_from_env() -> String {
    std::env::var(ENDPOINT_VAR)
        .ok()
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
}

/// How patient the client is.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Pause between two polls of a running action.
    pub poll_interval: Duration,
    /// How long an action may run before the client gives up on it.
    pub action_timeout: Duration,
    /// How many times a request is sent while the answer is retried
    /// ([`retry`]: `locked`, `conflict`, 429, 502, 504, …).
    pub attempts: u32,
    /// The first pause before a retry; it doubles (jittered) after each.
    pub retry_base: Duration,
    /// The longest pause before a retry, whatever the headers say.
    pub max_backoff: Duration,
    /// How long one request may take before it counts as a network timeout.
    pub request_timeout: Duration,
    /// Log each call (method, path, query, status, time; never the token or a body) on stderr.
    pub debug: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            poll_interval: Duration::from_millis(1000),
            action_timeout: Duration::from_secs(30 * 60),
            attempts: 6,
            retry_base: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            request_timeout: Duration::from_secs(120),
            debug: false,
        }
    }
}

/// The API client.
pub struct Client {
    agent: ureq::Agent,
    endpoint: String,
    token: Token,
    options: ClientOptions,
}

#[derive(Clone, Copy)]
enum Method {
    Get,
    Post,
    Delete,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

/// One page of a list: the items under `key`, and the next page if any.
fn page_items(body: Value, key: &str) -> Result<(Vec<Value>, Option<u64>), String> {
    let next = body
        .pointer("/meta/pagination/next_page")
        .and_then(Value::as_u64);
    match body.get(key) {
        Some(Value::Array(items)) => Ok((items.clone(), next)),
        _ => Err(format!("no `{key}` list in the answer")),
    }
}

impl Client {
    /// A client for `endpoint` (e.g. [`DEFAULT_ENDPOINT`]) with `token`.
    pub fn new(endpoint: &str, token: Token, options: ClientOptions) -> Result<Client, ApiError> {
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let agent = http::agent(options.request_timeout).map_err(|reason| ApiError::Transport {
            what: "setting up TLS".into(),
            endpoint: endpoint.clone(),
            reason,
        })?;
        Ok(Client {
            agent,
            endpoint,
            token,
            options,
        })
    }

    /// The client's options.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// Send one request, retried by the [`retry`] rules; the JSON body
    /// (`Null` for 204).
    fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let what = format!("{} {path}", method.name());
        let attempts = self.options.attempts.max(1);
        let mut attempt = 0;
        loop {
            let started = Instant::now();
            let answer = self.send_once(method, path, query, body);
            self.log(method, path, query, &answer, started);
            let wait = match &answer {
                Err(Sent::Transport { timed_out, .. })
                    if retry::retried_transport(method.name(), *timed_out) =>
                {
                    retry::backoff(
                        None,
                        None,
                        attempt,
                        self.options.retry_base,
                        self.options.max_backoff,
                    )
                }
                Ok(a) if retry::retried_answer(a.status, a.code().as_deref()) => retry::backoff(
                    a.retry_after.as_deref(),
                    a.reset.as_deref(),
                    attempt,
                    self.options.retry_base,
                    self.options.max_backoff,
                ),
                _ => return self.finish(what, answer),
            };
            attempt += 1;
            if attempt >= attempts {
                return match answer {
                    Ok(a) if a.status == 429 => Err(ApiError::RateLimited { what, attempts }),
                    other => self.finish(what, other),
                };
            }
            eprintln!(
                "upload: {what}: {}, retrying in {wait:.1?} ({attempt}/{})",
                describe(&answer),
                attempts - 1
            );
            std::thread::sleep(wait);
        }
    }

    /// One request on the wire; its status, headers and body.
    fn send_once(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Answer, Sent> {
        let url = format!("{}{path}", self.endpoint);
        let auth = format!("Bearer {}", self.token.expose());
        let pairs = query.iter().map(|(k, v)| (*k, v.as_str()));
        let sent = match method {
            Method::Get | Method::Delete => {
                let req = match method {
                    Method::Get => self.agent.get(&url),
                    _ => self.agent.delete(&url),
                };
                req.header("Authorization", &auth).query_pairs(pairs).call()
            }
            Method::Post => {
                let bytes = body.map(Value::to_string).unwrap_or_else(|| "{}".into());
                self.agent
                    .post(&url)
                    .header("Authorization", &auth)
                    .header("Content-Type", "application/json")
                    .query_pairs(pairs)
                    .send(bytes.as_bytes())
            }
        };
        let transport = |e: ureq::Error| Sent::Transport {
            timed_out: matches!(e, ureq::Error::Timeout(_))
                || matches!(&e, ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut),
            reason: e.to_string(),
        };
        let mut resp = sent.map_err(transport)?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (retry_after, reset) = (header("retry-after"), header("ratelimit-reset"));
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().map_err(transport)?;
        Ok(Answer {
            status,
            text,
            retry_after,
            reset,
        })
    }

    /// The value of a final answer, or its error.
    fn finish(&self, what: String, answer: Result<Answer, Sent>) -> Result<Value, ApiError> {
        let a = answer.map_err(|Sent::Transport { timed_out, reason }| match timed_out {
            true => ApiError::TimedOut {
                what: what.clone(),
                secs: self.options.request_timeout.as_secs_f64(),
            },
            false => ApiError::Transport {
                what: what.clone(),
                endpoint: self.endpoint.clone(),
                reason,
            },
        })?;
        if !(200..300).contains(&a.status) {
            return Err(error_from(what, a.status, &a.text));
        }
        if a.text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&a.text).map_err(|e| ApiError::Decode {
            what,
            reason: e.to_string(),
        })
    }

    /// `--debug`: one line per call. The token is a header and never shown.
    fn log(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        answer: &Result<Answer, Sent>,
        started: Instant,
    ) {
        if !self.options.debug {
            return;
        }
        let q: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let q = match q.is_empty() {
            true => String::new(),
            false => format!("?{}", q.join("&")),
        };
        eprintln!(
            "api: {} {path}{q} → {} ({} ms)",
            method.name(),
            describe(answer),
            started.elapsed().as_millis()
        );
    }

    fn typed<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<T, ApiError> {
        let value = self.send(method, path, query, body)?;
        serde_json::from_value(value).map_err(|e| ApiError::Decode {
            what: format!("{} {path}", method.name()),
            reason: e.to_string(),
        })
    }

    /// Every item of a paginated list, following `meta.pagination.next_page`.
    fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        key: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<T>, ApiError> {
        let mut out = Vec::new();
        let mut page = 1u64;
        loop {
            let mut q = query.to_vec();
            q.push(("page", page.to_string()));
            q.push(("per_page", "50".to_string()));
            let body = self.send(Method::Get, path, &q, None)?;
            let decode = |reason: String| ApiError::Decode {
                what: format!("GET {path}"),
                reason,
            };
            let (items, next) = page_items(body, key).map_err(decode)?;
            for item in items {
                out.push(serde_json::from_value(item).map_err(|e| decode(e.to_string()))?);
            }
            match next {
                Some(n) if n > page => page = n,
                _ => return Ok(out),
            }
        }
    }
}

/// An answer as received.
struct Answer {
    status: u16,
    text: String,
    retry_after: Option<String>,
    reset: Option<String>,
}

impl Answer {
    /// The error envelope's code, if there is one.
    fn code(&self) -> Option<String> {
        serde_json::from_str::<Value>(&self.text)
            .ok()?
            .pointer("/error/code")?
            .as_str()
            .map(str::to_string)
    }
}

/// A request that got no answer.
enum Sent {
    /// The network failed (`timed_out`: no answer in time).
    Transport { timed_out: bool, reason: String },
}

/// A short account of an answer, for logs and retry notes.
fn describe(answer: &Result<Answer, Sent>) -> String {
    match answer {
        Ok(a) => match a.code() {
            Some(code) => format!("{} {code}", a.status),
            None => a.status.to_string(),
        },
        Err(Sent::Transport {
            timed_out: true, ..
        }) => "timed out".into(),
        Err(Sent::Transport { reason, .. }) => format!("network error: {reason}"),
    }
}

/// An [`ApiError`] from a non-2xx answer: the error envelope when there is one.
fn error_from(what: String, status: u16, text: &str) -> ApiError {
    let envelope: Option<Value> = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v.get("error").cloned());
    let body: String = text.chars().take(300).collect();
    let field = |k: &str| {
        envelope
            .as_ref()
            .and_then(|e| e.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    if status == 401 {
        let message = field("message").unwrap_or(body);
        return ApiError::Unauthorized { message };
    }
    let Some(err) = &envelope else {
        return ApiError::Http { what, status, body };
    };
    let (code, message) = (
        field("code").unwrap_or_default(),
        field("message").unwrap_or_default(),
    );
    let details = match err.get("details") {
        None | Some(Value::Null) => String::new(),
        Some(Value::Object(m)) if m.is_empty() => String::new(),
        Some(d) => format!(" (details: {d})"),
    };
    ApiError::Api {
        what,
        status,
        code,
        message,
        details,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_is_shown_with_code_and_message() {
        let e = error_from(
            "POST /servers".into(),
            422,
            r#"{"error":{"code":"invalid_input","message":"invalid input in field 'server_type'","details":{"fields":[{"name":"server_type"}]}}}"#,
        );
        let s = e.to_string();
        assert!(s.contains("POST /servers"), "{s}");
        assert!(
            s.contains("422 invalid_input: invalid input in field 'server_type'"),
            "{s}"
        );
        assert!(s.contains("\"name\":\"server_type\""), "{s}");
        let e = error_from(
            "GET /servers".into(),
            401,
            r#"{"error":{"code":"unauthorized","message":"unable to authenticate","details":{}}}"#,
        );
        assert!(
            e.to_string()
                .starts_with("the Hetzner API refused the token (401 unauthorized)")
        );
        let e = error_from("GET /x".into(), 502, "<html>bad gateway</html>");
        assert!(e.to_string().contains("HTTP 502: <html>bad gateway"));
    }

    #[test]
    fn pages() {
        let v: Value = serde_json::from_str(
            r#"{"images":[{"id":1}],"meta":{"pagination":{"page":1,"per_page":1,"previous_page":null,"next_page":2,"last_page":2,"total_entries":2}}}"#,
        )
        .unwrap();
        let (items, next) = page_items(v, "images").unwrap();
        assert_eq!((items.len(), next), (1, Some(2)));
    }
}
