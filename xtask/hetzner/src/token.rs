//! The API token: read from the environment only, never printed.

use std::fmt;

/// A Hetzner Cloud API token. Its `Debug` and `Display` are redacted, so it
/// cannot reach a log or an error message by accident.
#[derive(Clone)]
pub struct Token(String);

/// The environment variable the token comes from (as for the `hcloud` CLI).
pub const TOKEN_VAR: &str = "HCLOUD_TOKEN";

impl Token {
    /// The token from `HCLOUD_TOKEN`.
    pub fn from_env() -> Result<Token, MissingToken> {
        match std::env::var(TOKEN_VAR) {
            Ok(t) if !t.trim().is_empty() => Ok(Token(t.trim().to_string())),
            _ => Err(MissingToken),
        }
    }

    /// A token from a string (tests, other sources).
    pub fn new(secret: impl Into<String>) -> Token {
        Token(secret.into())
    }

    /// The secret itself, for the `Authorization` header only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `HCLOUD_TOKEN` is unset or empty.
#[derive(Debug, thiserror::Error)]
#[error(
    "HCLOUD_TOKEN is not set: create an API token in the Hetzner Cloud console \
     (your project → Security → API tokens, read & write) and export it as HCLOUD_TOKEN"
)]
pub struct MissingToken;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let t = Token::new("s3cr3t-token");
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
        assert_eq!(format!("{t}"), "<redacted>");
        assert!(!format!("{t:?} {t}").contains("s3cr3t"));
    }
}
