//! Which answers are worth sending a request again for, and how long to
//! wait first: hcloud-go's rules.
//!
//! Retried: the error codes `conflict`, `locked`, `rate_limit_exceeded`,
//! `bad_gateway` and `timeout`; HTTP 429, 502 and 504 (with or without an
//! envelope); and a network timeout — for `GET` and `DELETE` only, since a
//! `POST` that timed out may have taken effect (the upload then finds what
//! it made by the run's label). The pause doubles from a base, is capped, and
//! is jittered (half fixed, half random) so parallel runs do not retry in step.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The envelope codes that mean "try again later".
pub const RETRIED_CODES: [&str; 5] = [
    "conflict",
    "locked",
    "rate_limit_exceeded",
    "bad_gateway",
    "timeout",
];

/// The HTTP statuses retried even without an envelope.
pub const RETRIED_STATUSES: [u16; 3] = [429, 502, 504];

/// Whether an answer of `status` with envelope `code` is retried.
pub fn retried_answer(status: u16, code: Option<&str>) -> bool {
    RETRIED_STATUSES.contains(&status) || code.is_some_and(|c| RETRIED_CODES.contains(&c))
}

/// Whether a network error of a `method` request is retried: only
/// timeouts, and only when sending the request again cannot do anything
/// twice.
pub fn retried_transport(method: &str, timed_out: bool) -> bool {
    timed_out && matches!(method, "GET" | "DELETE")
}

/// A number in `0..n` from the clock and a random hasher key (no `rand`).
fn jitter(n: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    if n == 0 {
        return 0;
    }
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish() % n
}

/// The pause before try `attempt + 1` (0-based `attempt`): `Retry-After`
/// seconds, else until `RateLimit-Reset` (a UNIX time), else `base`·2^attempt
/// jittered; never more than `cap`.
pub fn backoff(
    retry_after: Option<&str>,
    reset: Option<&str>,
    attempt: u32,
    base: Duration,
    cap: Duration,
) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let told = retry_after
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or_else(|| {
            reset
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|t| t.saturating_sub(now).max(1))
        });
    if let Some(secs) = told {
        return Duration::from_secs(secs).min(cap);
    }
    let full = base.saturating_mul(1u32 << attempt.min(16)).min(cap);
    let half = full / 2;
    let millis = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
    half + Duration::from_millis(jitter(millis + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_first_then_jittered_doubling_all_capped() {
        let (base, cap) = (Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(
            backoff(Some("3"), None, 0, base, cap),
            Duration::from_secs(3)
        );
        assert_eq!(backoff(Some("3000"), None, 0, base, cap), cap);
        let soon = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 5;
        let d = backoff(None, Some(&soon.to_string()), 0, base, cap);
        assert!(
            d >= Duration::from_secs(4) && d <= Duration::from_secs(5),
            "{d:?}"
        );
        assert_eq!(
            backoff(None, Some("1"), 0, base, cap),
            Duration::from_secs(1)
        );
        for _ in 0..50 {
            let d = backoff(None, None, 2, base, cap);
            assert!(
                d >= Duration::from_secs(2) && d <= Duration::from_secs(4),
                "{d:?}"
            );
        }
        assert!(backoff(None, None, 30, base, cap) <= cap);
    }

    #[test]
    fn hcloud_go_rules() {
        for code in RETRIED_CODES {
            assert!(retried_answer(409, Some(code)), "{code}");
        }
        assert!(retried_answer(502, None));
        assert!(retried_answer(504, None));
        assert!(retried_answer(429, None));
        assert!(!retried_answer(422, Some("invalid_input")));
        assert!(!retried_answer(503, Some("resource_unavailable")));
        assert!(!retried_answer(404, Some("not_found")));
        assert!(retried_transport("GET", true));
        assert!(retried_transport("DELETE", true));
        assert!(!retried_transport("POST", true));
        assert!(!retried_transport("GET", false));
    }
}
