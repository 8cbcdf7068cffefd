//! A small client for the part of the Hetzner Cloud API the upload uses.
//!
//! Every call sends the token as a bearer header, answers with typed values
//! ([`types`]), turns the error envelope `{"error":{"code","message","details"}}`
//! into an [`ApiError`], waits and retries on 429 (`Retry-After`, else
//! `RateLimit-Reset`), follows `meta.pagination.next_page`, and polls actions
//! through `GET /actions?id=…` ([`Client::wait_for`]).

mod actions;
mod error;
mod http;
mod resources;
pub mod types;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    /// How many times a request is sent while the API answers 429.
    pub rate_limit_attempts: u32,
    /// The longest pause after a 429, whatever the headers say.
    pub max_backoff: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            poll_interval: Duration::from_millis(1000),
            action_timeout: Duration::from_secs(30 * 60),
            rate_limit_attempts: 6,
            max_backoff: Duration::from_secs(120),
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

/// How long to wait after a 429: `Retry-After` seconds, else until
/// `RateLimit-Reset` (a UNIX time), else exponential; at most `cap`.
fn backoff(
    retry_after: Option<&str>,
    reset: Option<&str>,
    attempt: u32,
    cap: Duration,
) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let secs = retry_after
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or_else(|| {
            reset
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|t| t.saturating_sub(now).max(1))
        })
        .unwrap_or(1u64 << attempt.min(6));
    Duration::from_secs(secs).min(cap)
}

impl Client {
    /// A client for `endpoint` (e.g. [`DEFAULT_ENDPOINT`]) with `token`.
    pub fn new(endpoint: &str, token: Token, options: ClientOptions) -> Result<Client, ApiError> {
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let agent = http::agent().map_err(|reason| ApiError::Transport {
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

    /// Send one request (retrying on 429) and return the JSON body (`Null` for 204).
    fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let what = format!("{} {path}", method.name());
        let url = format!("{}{path}", self.endpoint);
        let auth = format!("Bearer {}", self.token.expose());
        let attempts = self.options.rate_limit_attempts.max(1);
        for attempt in 0..attempts {
            let sent = match method {
                Method::Get | Method::Delete => {
                    let req = match method {
                        Method::Get => self.agent.get(&url),
                        _ => self.agent.delete(&url),
                    };
                    req.header("Authorization", &auth)
                        .query_pairs(query.iter().map(|(k, v)| (*k, v.as_str())))
                        .call()
                }
                Method::Post => {
                    let bytes = body.map(Value::to_string).unwrap_or_else(|| "{}".into());
                    self.agent
                        .post(&url)
                        .header("Authorization", &auth)
                        .header("Content-Type", "application/json")
                        .query_pairs(query.iter().map(|(k, v)| (*k, v.as_str())))
                        .send(bytes.as_bytes())
                }
            };
            let mut resp = sent.map_err(|e| ApiError::Transport {
                what: what.clone(),
                endpoint: self.endpoint.clone(),
                reason: e.to_string(),
            })?;
            let status = resp.status().as_u16();
            let header = |name: &str| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            if status == 429 {
                let wait = backoff(
                    header("retry-after").as_deref(),
                    header("ratelimit-reset").as_deref(),
                    attempt,
                    self.options.max_backoff,
                );
                if attempt + 1 < attempts {
                    eprintln!(
                        "upload: {what}: rate limited (429), retrying in {:.0?}",
                        wait
                    );
                    std::thread::sleep(wait);
                }
                continue;
            }
            let text = resp
                .body_mut()
                .read_to_string()
                .map_err(|e| ApiError::Decode {
                    what: what.clone(),
                    reason: format!("reading the body: {e}"),
                })?;
            if (200..300).contains(&status) {
                if text.trim().is_empty() {
                    return Ok(Value::Null);
                }
                return serde_json::from_str(&text).map_err(|e| ApiError::Decode {
                    what,
                    reason: e.to_string(),
                });
            }
            return Err(error_from(what, status, &text));
        }
        Err(ApiError::RateLimited { what, attempts })
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
    fn backoff_prefers_retry_after_then_reset_and_is_capped() {
        let cap = Duration::from_secs(60);
        assert_eq!(backoff(Some("3"), None, 0, cap), Duration::from_secs(3));
        assert_eq!(backoff(Some("3000"), None, 0, cap), cap);
        let soon = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 5;
        let d = backoff(None, Some(&soon.to_string()), 0, cap);
        assert!(
            d >= Duration::from_secs(4) && d <= Duration::from_secs(5),
            "{d:?}"
        );
        assert_eq!(backoff(None, Some("1"), 0, cap), Duration::from_secs(1));
        assert_eq!(backoff(None, None, 2, cap), Duration::from_secs(4));
    }

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
