//! The npm side: the Node runtime package and the OpenClaw dependency tree.
