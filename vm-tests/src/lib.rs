//! Boots an appliance image in QEMU and proves the invariants of `invariants.md`.
