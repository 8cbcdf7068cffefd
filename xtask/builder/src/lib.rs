//! Everything between the spec and the disk image: lock resolution, the
//! content-addressed store, host checks, the build stages and the disk.
//!
//! Architecture invariant: only `fetch`-side code (`debian::release`,
//! `npm`, `store::fetch`, and `gomod::resolve` / `gomod::store`'s
//! `go mod download` for `lock` and `fetch`) touches the network; build
//! stages run offline from the store (the Tailscale stage's Go reads a
//! `file://` module proxy).

pub mod agent_binary;
pub mod build;
pub mod debian;
pub mod doctor;
pub mod fetching;
pub mod fsutil;
pub mod gomod;
pub mod host;
pub mod http;
pub mod locking;
pub mod npm;
pub mod progress;
pub mod rootfs;
pub mod sources;
pub mod store;
pub mod tailscale;
