//! What can go wrong talking to the API, worded for the person at the terminal.

/// An API call failed. Never contains the token.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401: the token is wrong, revoked or of another project.
    #[error(
        "the Hetzner API refused the token (401 unauthorized): {message}; \
         check HCLOUD_TOKEN: a read & write API token of the project you upload to"
    )]
    Unauthorized {
        /// The API's message.
        message: String,
    },
    /// An error envelope `{"error":{"code","message","details"}}`.
    #[error("{what}: the Hetzner API answered {status} {code}: {message}{details}")]
    Api {
        /// The request, e.g. `POST /servers`.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The envelope's machine-readable code (e.g. `invalid_input`).
        code: String,
        /// The envelope's message.
        message: String,
        /// The envelope's details, rendered (empty when there are none).
        details: String,
    },
    /// A non-2xx answer without an error envelope.
    #[error("{what}: the Hetzner API answered HTTP {status}: {body}")]
    Http {
        /// The request.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// Still rate limited after every retry.
    #[error("{what}: still rate limited (429) after {attempts} attempts; wait a while and retry")]
    RateLimited {
        /// The request.
        what: String,
        /// How many times it was sent.
        attempts: u32,
    },
    /// The API could not be reached.
    #[error(
        "{what}: cannot reach the Hetzner API at {endpoint}: {reason} (HCLOUD_ENDPOINT overrides the endpoint)"
    )]
    Transport {
        /// The request.
        what: String,
        /// The API's base URL.
        endpoint: String,
        /// The transport's error.
        reason: String,
    },
    /// No answer in time: the request may still have taken effect.
    #[error(
        "{what}: no answer from the Hetzner API within {secs:.1} s (timed out); \
         a request that changes something may still have taken effect"
    )]
    TimedOut {
        /// The request.
        what: String,
        /// The client's timeout.
        secs: f64,
    },
    /// The answer is not the documented JSON.
    #[error("{what}: unexpected answer from the Hetzner API: {reason}")]
    Decode {
        /// The request.
        what: String,
        /// What did not parse.
        reason: String,
    },
    /// An action ended in `error`.
    #[error("action {id} ({command}) failed: {code}: {message}")]
    ActionFailed {
        /// The action's id.
        id: i64,
        /// Its command, e.g. `create_image`.
        command: String,
        /// The action error's code.
        code: String,
        /// The action error's message.
        message: String,
    },
    /// An action did not finish in time.
    #[error("action {id} ({command}) still running after {secs} s")]
    ActionTimeout {
        /// The action's id.
        id: i64,
        /// Its command.
        command: String,
        /// How long was waited.
        secs: u64,
    },
    /// Ctrl-C while waiting.
    #[error("interrupted")]
    Interrupted,
}
