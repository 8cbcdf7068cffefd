//! Boots an appliance image in QEMU and proves the invariants of `invariants.md`.
//!
//! The harness is a Rust take on the NixOS test driver: a [`Machine`] boots
//! a copy-on-write overlay of the tested image (which stays byte-identical),
//! reaches the guest through a command channel added from outside the image
//! (a systemd unit passed as an SMBIOS credential, talking over
//! virtio-serial; see [`shell`]), and offers assertion-like verbs:
//! [`Machine::succeed`], [`Machine::fail`], [`Machine::wait_for_unit`],
//! [`Machine::wait_until_succeeds`], [`Machine::crash`],
//! [`Machine::shutdown`], …
//!
//! Architecture invariant: nothing here writes to the tested image.

#![warn(missing_docs)]

pub mod accel;
pub mod credential;
pub mod diskscan;
pub mod firmware;
pub mod imagefs;
pub mod livescan;
pub mod log;
pub mod machine;
pub mod net;
pub mod qemu;
pub mod qmp;
pub mod retry;
pub mod ruleset;
pub mod shell;
pub mod suite;

pub use accel::{Accel, AccelChoice};
pub use credential::Credential;
pub use firmware::Firmware;
pub use machine::{Machine, MachineConfig};
pub use qemu::{DirectKernel, Icount, ImageFormat};
pub use retry::{Attempt, retry};
pub use shell::CommandOutput;
