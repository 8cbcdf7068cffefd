//! The one polling loop of the harness: every `wait_*` goes through [`retry`].

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::log::{Log, secs};

/// What one attempt of a [`retry`] loop found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt<T> {
    /// The condition holds; the loop returns this value.
    Done(T),
    /// Not yet; the text describes the current state (logged on the last try
    /// and quoted in the timeout error).
    NotYet(String),
}

/// First pause between attempts; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
/// Longest pause between attempts.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// Calls `attempt` until it returns [`Attempt::Done`], for at most `timeout`.
///
/// `attempt` receives `true` on its last try (it may collect more detail
/// then). An `Err` from `attempt` ends the loop at once: that is how terminal
/// states (a failed unit, a dead QEMU) fail fast instead of after the timeout.
/// On timeout the last state is logged and quoted in the error.
pub fn retry<T>(
    log: &Log,
    what: &str,
    timeout: Duration,
    mut attempt: impl FnMut(bool) -> Result<Attempt<T>>,
) -> Result<T> {
    let start = Instant::now();
    let end = start + timeout;
    let mut pause = FIRST_PAUSE;
    loop {
        let now = Instant::now();
        let last = now >= end || now + pause >= end;
        match attempt(last)? {
            Attempt::Done(value) => {
                log.info(format_args!("{what}: done in {}", secs(start.elapsed())));
                return Ok(value);
            }
            Attempt::NotYet(state) => {
                if last {
                    log.info(format_args!(
                        "{what}: timed out after {}; last state: {state}",
                        secs(start.elapsed())
                    ));
                    bail!(
                        "timed out after {} waiting for {what}; last state: {state}",
                        secs(timeout)
                    );
                }
            }
        }
        let left = end.saturating_duration_since(Instant::now());
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_value_once_done() {
        let log = Log::new("test");
        let mut n = 0;
        let got = retry(&log, "three tries", Duration::from_secs(10), |_| {
            n += 1;
            Ok(if n == 3 {
                Attempt::Done(n)
            } else {
                Attempt::NotYet(format!("n={n}"))
            })
        });
        assert_eq!(got.ok(), Some(3));
    }

    #[test]
    fn times_out_with_the_last_state_and_one_last_try() {
        let log = Log::new("test");
        let mut saw_last = false;
        let err = retry::<()>(&log, "never", Duration::from_millis(250), |last| {
            saw_last |= last;
            Ok(Attempt::NotYet("still nothing".into()))
        });
        let msg = format!("{:#}", err.unwrap_err());
        assert!(msg.contains("waiting for never"), "{msg}");
        assert!(msg.contains("still nothing"), "{msg}");
        assert!(saw_last);
    }

    #[test]
    fn an_error_ends_the_loop_at_once() {
        let log = Log::new("test");
        let start = Instant::now();
        let err = retry::<()>(&log, "fails", Duration::from_secs(30), |_| {
            anyhow::bail!("unit failed")
        });
        assert!(err.is_err());
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}
