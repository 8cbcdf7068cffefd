//! A set of files to lay over a root filesystem: paths, modes, owners, bytes.

use std::collections::BTreeMap;

/// One filesystem entry of the appliance layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A regular file.
    File {
        /// Permission bits.
        mode: u32,
        /// Owner uid.
        uid: u32,
        /// Owner gid.
        gid: u32,
        /// Contents.
        data: Vec<u8>,
    },
    /// A directory.
    Dir {
        /// Permission bits.
        mode: u32,
        /// Owner uid.
        uid: u32,
        /// Owner gid.
        gid: u32,
    },
    /// A symbolic link.
    Symlink {
        /// Where it points.
        target: String,
    },
}

/// Absolute paths (without the leading `/`) to entries, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    entries: BTreeMap<String, Entry>,
}

impl Tree {
    /// Adds a root-owned file.
    pub fn file(&mut self, path: &str, mode: u32, data: impl Into<Vec<u8>>) {
        self.owned_file(path, mode, 0, 0, data);
    }

    /// Adds a file with an owner.
    pub fn owned_file(
        &mut self,
        path: &str,
        mode: u32,
        uid: u32,
        gid: u32,
        data: impl Into<Vec<u8>>,
    ) {
        self.entries.insert(
            clean(path),
            Entry::File {
                mode,
                uid,
                gid,
                data: data.into(),
            },
        );
    }

    /// Adds a directory with an owner.
    pub fn dir(&mut self, path: &str, mode: u32, uid: u32, gid: u32) {
        self.entries
            .insert(clean(path), Entry::Dir { mode, uid, gid });
    }

    /// Adds a symlink.
    pub fn symlink(&mut self, path: &str, target: &str) {
        self.entries.insert(
            clean(path),
            Entry::Symlink {
                target: target.to_string(),
            },
        );
    }

    /// All entries, sorted by path.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries.iter().map(|(p, e)| (p.as_str(), e))
    }

    /// One entry.
    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.get(&clean(path))
    }

    /// The text of a file entry (for tests and snapshots).
    pub fn text(&self, path: &str) -> Option<String> {
        match self.get(path)? {
            Entry::File { data, .. } => Some(String::from_utf8_lossy(data).into_owned()),
            _ => None,
        }
    }
}

fn clean(path: &str) -> String {
    path.trim_start_matches('/').to_string()
}
