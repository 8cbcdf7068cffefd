//! The tools tree: a locked Debian rootfs whose binaries build the disk.
