//! Everything between the spec and the disk image: lock resolution, the
//! content-addressed store, host checks, the build stages and the disk.
