//! Small host-side helpers that the host crates (`xtask`, `builder`,
//! `hetzner`, `bench`, `vm-tests`) share, each written once here:
//!
//! - quoting a word for a POSIX shell ([`shell_quote`], [`shell_word`]);
//! - finding a program on `PATH` ([`which`], [`find_program`]);
//! - tying a child process's life to its spawning thread
//!   ([`die_with_parent`]);
//! - hashing a file or a stream with sha256 ([`sha256_file`],
//!   [`sha256_reader`]).
//!
//! What it must not do: know about the image, the spec or the lock, start a
//! program, read the network, or hold any policy (which directories to look
//! in besides `PATH`, what a hash is checked against): callers decide that.
//! It is host code only: the in-guest agent (`appliance`) keeps its own few
//! helpers, so that its binary, which is part of the image's bytes, depends
//! on nothing this crate changes.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// `s` as one single-quoted word for a POSIX shell (`'` becomes `'\''`),
/// always quoted.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `s` as one word for a POSIX shell: as it is when it is not empty and
/// holds only ASCII letters, digits and `/._-+@`, else [`shell_quote`]d.
/// For text people read (and scripts written into the image, whose bytes
/// must not change: the set of bare characters is fixed).
pub fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+@".contains(&b))
    {
        s.to_string()
    } else {
        shell_quote(s)
    }
}

/// Debian's directories of system programs, which a user's `PATH` may lack
/// (`sshd`, `iptables`): pass them as `also` to [`which`] where a program
/// may live there.
pub const SBIN_DIRS: &[&str] = &["/usr/sbin", "/sbin"];

/// The first of `names` that is a file in a directory of `path` (a `PATH`
/// value), else in one of `also`, directory by directory.
pub fn find_program(path: &OsStr, names: &[&str], also: &[&str]) -> Option<PathBuf> {
    let dirs: Vec<PathBuf> = std::env::split_paths(path)
        .chain(also.iter().map(PathBuf::from))
        .collect();
    dirs.iter()
        .flat_map(|d| names.iter().map(move |n| d.join(n)))
        .find(|p| p.is_file())
}

/// `tool`'s path in this process's `PATH`, else in one of `also`.
pub fn which(tool: &str, also: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    find_program(&path, &[tool], also)
}

/// Makes the kernel SIGKILL the child when the thread that spawned it
/// exits, so a process killed by a signal (no destructors run) leaves no
/// child (QEMU, a DHCP server) behind. Caveat of `PR_SET_PDEATHSIG`: it is
/// tied to the spawning *thread*, so spawn from a thread that lives as long
/// as the child should.
pub fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: getpid is async-signal-safe.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs between fork and exec and calls only
    // async-signal-safe functions (prctl, getppid, _exit); it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Why a file could not be hashed; its message names the file.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The file could not be opened.
    #[error("opening {}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// What `open` said.
        #[source]
        source: io::Error,
    },
    /// The file could not be read.
    #[error("reading {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What `read` said.
        #[source]
        source: io::Error,
    },
    /// The thread that reads the file panicked.
    #[error("the reading thread panicked")]
    Panicked,
}

/// sha256 of everything `reader` yields, lowercase hex.
pub fn sha256_reader(mut reader: impl Read) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// sha256 of the file at `path`, lowercase hex. One thread reads while this
/// one hashes, and holes of a sparse file (found with
/// `SEEK_DATA`/`SEEK_HOLE`) are hashed as zeros without being read: of the
/// 4 GiB image about half is holes.
pub fn sha256_file(path: &Path) -> Result<String, HashError> {
    const CHUNK: usize = 4 << 20;
    /// What the reading thread hands over: bytes read, or a run of zeros.
    enum Piece {
        Data(Vec<u8>),
        Zeros(u64),
    }
    let read_error = |source| HashError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut f = File::open(path).map_err(|source| HashError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let len = f.metadata().map_err(read_error)?.len();
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Piece>(2);
    let (empty_tx, empty_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    for _ in 0..3 {
        let _ = empty_tx.send(vec![0u8; CHUNK]);
    }
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || -> io::Result<()> {
            let mut pos = 0u64;
            while pos < len {
                // Where the next data starts (the end when only a hole is left;
                // a filesystem without SEEK_DATA reports all data).
                let data = match rustix::fs::seek(&f, rustix::fs::SeekFrom::Data(pos)) {
                    Ok(d) => d.min(len),
                    Err(rustix::io::Errno::NXIO) => len,
                    Err(_) => pos,
                };
                if data > pos {
                    if full_tx.send(Piece::Zeros(data - pos)).is_err() {
                        return Ok(());
                    }
                    pos = data;
                    continue;
                }
                let hole = rustix::fs::seek(&f, rustix::fs::SeekFrom::Hole(pos))
                    .map_or(len, |h| h.min(len));
                f.seek(SeekFrom::Start(pos))?;
                let mut left = hole.max(pos + 1) - pos;
                while left > 0 {
                    let Ok(mut buf) = empty_rx.recv() else {
                        return Ok(());
                    };
                    let want = CHUNK.min(usize::try_from(left).unwrap_or(CHUNK));
                    buf.resize(want, 0);
                    let mut n = 0;
                    while n < want {
                        match f.read(&mut buf[n..])? {
                            0 => break,
                            k => n += k,
                        }
                    }
                    buf.truncate(n);
                    pos += n as u64;
                    left = if n < want { 0 } else { left - n as u64 };
                    if full_tx.send(Piece::Data(buf)).is_err() || n < want {
                        return Ok(());
                    }
                }
            }
            Ok(())
        });
        let zeros = vec![0u8; CHUNK];
        let mut h = Sha256::new();
        for piece in full_rx {
            match piece {
                Piece::Data(buf) => {
                    h.update(&buf);
                    let _ = empty_tx.send(buf);
                }
                Piece::Zeros(mut n) => {
                    while n > 0 {
                        let k = CHUNK.min(usize::try_from(n).unwrap_or(CHUNK));
                        h.update(&zeros[..k]);
                        n -= k as u64;
                    }
                }
            }
        }
        reader
            .join()
            .map_err(|_| HashError::Panicked)?
            .map_err(read_error)?;
        Ok(hex::encode(h.finalize()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/dev/sda"), "'/dev/sda'");
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_word("/opt/node/bin/node"), "/opt/node/bin/node");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
        assert_eq!(shell_word("k=v"), "'k=v'");
    }

    #[test]
    fn path_first_then_also() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(a.join("tool"), "").unwrap();
        std::fs::write(b.join("tool"), "").unwrap();
        std::fs::write(b.join("other"), "").unwrap();
        std::fs::create_dir(a.join("dir")).unwrap();
        let path = std::env::join_paths([&a]).unwrap();
        let also = b.to_str().unwrap();
        assert_eq!(
            find_program(&path, &["tool"], &[also]),
            Some(a.join("tool"))
        );
        assert_eq!(
            find_program(&path, &["other"], &[also]),
            Some(b.join("other"))
        );
        assert_eq!(find_program(&path, &["dir"], &[]), None);
        assert_eq!(find_program(&path, &["none"], &[also]), None);
        assert_eq!(
            find_program(&path, &["none", "other", "tool"], &[also]),
            Some(a.join("tool"))
        );
    }

    #[test]
    fn sha256_file_hashes_holes_as_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        let mut f = File::create(&path).unwrap();
        // hole, data, hole, data, trailing hole
        f.seek(SeekFrom::Start(5 << 20)).unwrap();
        f.write_all(&[7u8; 70_000]).unwrap();
        f.seek(SeekFrom::Start(13 << 20)).unwrap();
        f.write_all(b"end").unwrap();
        f.set_len(20 << 20).unwrap();
        drop(f);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            sha256_file(&path).unwrap(),
            hex::encode(Sha256::digest(&bytes))
        );
    }

    #[test]
    fn sha256_file_matches_one_shot_hash_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0usize, 1, (4 << 20) - 1, 4 << 20, (9 << 20) + 7] {
            let path = dir.path().join(format!("f{len}"));
            let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            std::fs::write(&path, &bytes).unwrap();
            assert_eq!(
                sha256_file(&path).unwrap(),
                hex::encode(Sha256::digest(&bytes)),
                "length {len}"
            );
            assert_eq!(
                sha256_reader(bytes.as_slice()).unwrap(),
                hex::encode(Sha256::digest(&bytes))
            );
        }
    }

    #[test]
    fn a_missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let e = sha256_file(&missing).unwrap_err();
        assert_eq!(e.to_string(), format!("opening {}", missing.display()));
    }

    #[test]
    fn the_child_dies_with_its_thread() {
        let child = std::thread::spawn(|| {
            let mut c = Command::new("sleep");
            c.arg("30");
            die_with_parent(&mut c);
            c.spawn().unwrap()
        })
        .join()
        .unwrap();
        let mut child = child;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(!status.success());
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "sleep outlived its thread"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
