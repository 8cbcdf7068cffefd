//! Debian archive access: mirrors, signed release files, package indexes and closure resolution.
