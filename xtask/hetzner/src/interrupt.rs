//! Ctrl-C: a flag the flow polls, so that it stops and cleans up.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set when the user asked to stop (SIGINT/SIGTERM). Cheap to clone; every
/// clone sees the same flag.
#[derive(Clone, Debug, Default)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    /// A flag nobody has set yet.
    pub fn new() -> Interrupt {
        Interrupt::default()
    }

    /// A flag set by Ctrl-C (and SIGTERM): the handler only sets the flag and
    /// says that the temporary resources are being deleted. Only one handler
    /// can exist per process.
    pub fn on_ctrl_c() -> Result<Interrupt, ctrlc::Error> {
        let flag = Interrupt::new();
        let seen = flag.clone();
        ctrlc::set_handler(move || {
            if !seen.0.swap(true, Ordering::SeqCst) {
                eprintln!("upload: interrupted; deleting the temporary server and key…");
            }
        })?;
        Ok(flag)
    }

    /// Ask to stop.
    pub fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether stopping was asked.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
