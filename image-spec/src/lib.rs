//! The appliance spec (`image.toml`) and lock (`image.lock`) types.
//!
//! Architecture invariant: this crate does no I/O. It parses text handed to
//! it, validates it into immutable resolved types and renders the lock back
//! to text. Fetching, resolving and building live in the `builder` crate.

mod error;
pub mod lock;
pub mod semver;
pub mod spec;
pub mod time;

pub use error::{SpecError, locate};
pub use lock::Lock;
pub use spec::Spec;
