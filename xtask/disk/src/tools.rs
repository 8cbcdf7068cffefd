//! The tools tree: a locked Debian rootfs whose binaries build the disk.
//!
//! The disk bytes must not depend on the host's `mke2fs`, `mkfs.fat`,
//! `sfdisk` or GRUB, so those tools come from a Debian trixie rootfs made by
//! `mmdebstrap` from the locked packages (mkosi calls this `ToolsTree=`).
//!
//! Binaries run from the tree **without chroot and without root**: the tree's
//! own dynamic loader is invoked explicitly with `--library-path` pointing at
//! the tree's library directories and `--inhibit-cache` (the host's
//! `/etc/ld.so.cache` is never consulted), so the tree's glibc and libraries
//! are used, including libraries loaded with `dlopen` (e2fsprogs 1.47 loads
//! `libarchive.so.13` that way for `mke2fs -d <tarball>`). Everything else a
//! tool could pick up from the host is pinned through the environment, which
//! is replaced, not inherited: locales (`LOCPATH`), iconv modules
//! (`GCONV_PATH`), `mke2fs.conf` (`MKE2FS_CONFIG`), mtools configuration
//! (`MTOOLSRC`, global flags), `PATH`, `TZ=UTC`, `LC_ALL=C.UTF-8`.
//! `SOURCE_DATE_EPOCH` and `E2FSPROGS_FAKE_TIME` are set per call.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader};
use std::path::{Component, Path, PathBuf};
use std::process::ExitStatus;

use anyhow::{Context, Result, bail};

/// Packages of the tools tree (besides what `--variant=minbase` brings).
pub const PACKAGES: &[&str] = &[
    "e2fsprogs",
    // dlopen()ed by mke2fs for `-d <tarball>`; only a Recommends.
    "libarchive13t64",
    "dosfstools",
    "mtools",
    "fdisk",
    "grub-common",
    "grub-pc-bin",
    "grub-efi-amd64-bin",
    "zstd",
    "xz-utils",
];

/// Files whose presence makes a directory a usable tools tree.
const REQUIRED: &[&str] = &[
    "usr/lib64/ld-linux-x86-64.so.2",
    "usr/sbin/mke2fs",
    "usr/sbin/mkfs.fat",
    "usr/sbin/sfdisk",
    "usr/bin/mcopy",
    "usr/bin/grub-mkimage",
    "usr/lib/grub/i386-pc/boot.img",
    "usr/lib/grub/i386-pc/diskboot.img",
    "usr/lib/grub/x86_64-efi/linux.mod",
    "usr/lib/x86_64-linux-gnu/libarchive.so.13",
];

/// Directories searched (in this order) for a tool name.
const BIN_DIRS: &[&str] = &["usr/sbin", "usr/bin"];

/// Lines of stderr kept for error messages.
const TAIL_LINES: usize = 25;

/// A command of the tools tree (or of the host) that failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The process could not be started.
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// The process ended unsuccessfully.
    #[error("`{command}` failed ({status}); stderr ends with:\n{stderr_tail}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// The last lines of its stderr.
        stderr_tail: String,
    },
}

/// A Debian trixie rootfs holding the image tools.
#[derive(Debug, Clone)]
pub struct ToolsTree {
    root: PathBuf,
}

impl ToolsTree {
    /// Bootstraps a tools tree at `dest` (which must not exist) with
    /// `mmdebstrap`, from the apt source line `repo_source_line`
    /// (e.g. `deb [trusted=yes] file:///…/repo trixie main`). The tree is
    /// written to a temporary directory next to `dest` and renamed into
    /// place, so `dest` is either absent or complete.
    pub fn create(dest: &Path, repo_source_line: &str, epoch: u64) -> Result<ToolsTree> {
        if dest.exists() {
            bail!("tools tree {} already exists", dest.display());
        }
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        let name = dest
            .file_name()
            .with_context(|| format!("{} has no file name", dest.display()))?;
        let mut prefix = OsString::from(".");
        prefix.push(name);
        prefix.push(".tmp-");
        let tmp = tempfile::Builder::new()
            .prefix(&prefix)
            .tempdir_in(parent)
            .with_context(|| format!("creating a temporary directory in {}", parent.display()))?;
        let argv = mmdebstrap_args(tmp.path(), repo_source_line);
        eprintln!("tools tree: mmdebstrap into {}", tmp.path().display());
        let started = std::time::Instant::now();
        let expr = duct::cmd("mmdebstrap", &argv)
            .env("SOURCE_DATE_EPOCH", epoch.to_string())
            .env("LC_ALL", "C.UTF-8")
            .env("TZ", "UTC");
        run_streaming(&expr, &command_line("mmdebstrap", &argv), "mmdebstrap")?;
        let tree = ToolsTree {
            root: tmp.path().to_path_buf(),
        };
        tree.check()?;
        std::fs::rename(tmp.path(), dest)
            .with_context(|| format!("renaming {} to {}", tmp.path().display(), dest.display()))?;
        // The directory now lives at `dest`; nothing is left to clean up.
        let _ = tmp.keep();
        eprintln!(
            "tools tree: {} ready in {:.1} s",
            dest.display(),
            started.elapsed().as_secs_f64()
        );
        ToolsTree::open(dest)
    }

    /// Opens an existing tools tree, checking that the tools are there.
    pub fn open(root: &Path) -> Result<ToolsTree> {
        let root =
            std::path::absolute(root).with_context(|| format!("resolving {}", root.display()))?;
        let tree = ToolsTree { root };
        tree.check()?;
        Ok(tree)
    }

    /// The tree's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `rel` (a path inside the tree such as `usr/lib/grub/i386-pc`), with
    /// symlinks resolved inside the tree, never on the host.
    pub fn path(&self, rel: impl AsRef<Path>) -> Result<PathBuf> {
        resolve_in_tree(&self.root, rel.as_ref())
    }

    /// Runs `tool` (a name looked up in the tree's `usr/sbin` and `usr/bin`)
    /// through the tree's dynamic loader, with a fixed environment.
    ///
    /// The environment is set with duct's `full_env`, which wins over any
    /// `.env()` applied to the returned expression: pass per-call variables
    /// through [`ToolsTree::command_with_env`] or [`ToolsTree::tool`].
    pub fn command<I, S>(&self, tool: &str, args: I) -> duct::Expression
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.command_with_env(tool, args, std::iter::empty::<(OsString, OsString)>())
    }

    /// [`ToolsTree::command`] with extra environment variables (which
    /// override the fixed ones of the same name).
    pub fn command_with_env<I, S, E, K, V>(&self, tool: &str, args: I, env: E) -> duct::Expression
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
        E: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        let (program, argv) = self.argv(tool, args.into_iter().map(Into::into));
        let mut vars = self.base_env();
        for (k, v) in env {
            let k = k.into();
            vars.retain(|(name, _)| *name != k);
            vars.push((k, v.into()));
        }
        duct::cmd(program, argv).full_env(vars)
    }

    /// A builder for one call of `tool` that runs it with [`Tool::run`] and
    /// reports failures with the command line, status and stderr tail.
    pub fn tool(&self, tool: &str) -> Tool<'_> {
        Tool {
            tree: self,
            name: tool.to_string(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Checks that the tree holds everything the disk stage needs.
    fn check(&self) -> Result<()> {
        let missing: Vec<&str> = REQUIRED
            .iter()
            .copied()
            .filter(|rel| self.path(rel).map(|p| !p.exists()).unwrap_or(true))
            .collect();
        if !missing.is_empty() {
            bail!(
                "{} is not a complete tools tree; missing: {}",
                self.root.display(),
                missing.join(", ")
            );
        }
        Ok(())
    }

    /// Program and arguments that run `tool` from the tree.
    fn argv(&self, tool: &str, args: impl Iterator<Item = OsString>) -> (PathBuf, Vec<OsString>) {
        let loader = self.root.join("usr/lib64/ld-linux-x86-64.so.2");
        let binary = BIN_DIRS
            .iter()
            .find_map(|dir| {
                self.path(Path::new(dir).join(tool))
                    .ok()
                    .filter(|p| p.is_file())
            })
            // Not found: let the loader report the missing file by name.
            .unwrap_or_else(|| self.root.join("usr/bin").join(tool));
        let mut argv: Vec<OsString> = vec![
            "--inhibit-cache".into(),
            "--library-path".into(),
            self.library_path(),
            // mtools dispatches on argv[0] (mcopy, mmd… are links to mtools).
            "--argv0".into(),
            tool.into(),
            binary.into(),
        ];
        argv.extend(args);
        (loader, argv)
    }

    fn library_path(&self) -> OsString {
        let mut s = OsString::new();
        for (i, dir) in ["usr/lib/x86_64-linux-gnu", "usr/lib"].iter().enumerate() {
            if i > 0 {
                s.push(":");
            }
            s.push(self.root.join(dir));
        }
        s
    }

    /// The whole environment of a tool (nothing is inherited from the host).
    fn base_env(&self) -> Vec<(OsString, OsString)> {
        let r = |rel: &str| self.root.join(rel).into_os_string();
        let mut path = OsString::new();
        for (i, dir) in BIN_DIRS.iter().enumerate() {
            if i > 0 {
                path.push(":");
            }
            path.push(self.root.join(dir));
        }
        vec![
            ("PATH".into(), path),
            ("LC_ALL".into(), "C.UTF-8".into()),
            ("TZ".into(), "UTC".into()),
            ("HOME".into(), "/nonexistent".into()),
            ("LOCPATH".into(), r("usr/lib/locale")),
            ("GCONV_PATH".into(), r("usr/lib/x86_64-linux-gnu/gconv")),
            ("MKE2FS_CONFIG".into(), r("etc/mke2fs.conf")),
            // mtools also reads the host's /etc/mtools.conf; the flags that
            // change what it writes are pinned here (environment wins).
            ("MTOOLSRC".into(), "/dev/null".into()),
            ("MTOOLS_SKIP_CHECK".into(), "1".into()),
            ("MTOOLS_LOWER_CASE".into(), "0".into()),
            ("MTOOLS_NO_VFAT".into(), "0".into()),
            ("MTOOLS_DOTTED_DIR".into(), "0".into()),
            ("MTOOLS_NAME_NUMERIC_TAIL".into(), "1".into()),
            ("MTOOLS_TWENTY_FOUR_HOUR_CLOCK".into(), "1".into()),
        ]
    }
}

/// One call of a tool of the tree; see [`ToolsTree::tool`].
#[derive(Debug, Clone)]
pub struct Tool<'a> {
    tree: &'a ToolsTree,
    name: String,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
}

impl Tool<'_> {
    /// Appends one argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable for this call.
    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Sets `SOURCE_DATE_EPOCH` for this call.
    pub fn epoch(self, epoch: u64) -> Self {
        self.env("SOURCE_DATE_EPOCH", epoch.to_string())
    }

    /// The command as a duct expression (stdio not redirected).
    pub fn expression(&self) -> duct::Expression {
        self.tree.command_with_env(
            &self.name,
            self.args.iter().cloned(),
            self.env.iter().cloned(),
        )
    }

    /// The command line, for messages.
    pub fn display(&self) -> String {
        let env: Vec<String> = self
            .env
            .iter()
            .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
            .collect();
        let cmd = command_line(&self.name, &self.args);
        if env.is_empty() {
            cmd
        } else {
            format!("{} {cmd}", env.join(" "))
        }
    }

    /// Runs the tool, returning its stdout.
    pub fn run(&self) -> Result<Vec<u8>, ToolError> {
        self.run_with_stdin(None)
    }

    /// Runs the tool with `stdin` as its standard input, returning stdout.
    pub fn run_with_stdin(&self, stdin: Option<&[u8]>) -> Result<Vec<u8>, ToolError> {
        let mut e = self
            .expression()
            .stdout_capture()
            .stderr_capture()
            .unchecked();
        e = match stdin {
            Some(bytes) => e.stdin_bytes(bytes.to_vec()),
            None => e.stdin_null(),
        };
        let out = e.run().map_err(|source| ToolError::Spawn {
            command: self.display(),
            source,
        })?;
        if !out.status.success() {
            return Err(ToolError::Failed {
                command: self.display(),
                status: out.status,
                stderr_tail: tail(&String::from_utf8_lossy(&out.stderr), TAIL_LINES),
            });
        }
        Ok(out.stdout)
    }
}

/// The `mmdebstrap` arguments that bootstrap a tools tree into `dir`.
pub fn mmdebstrap_args(dir: &Path, repo_source_line: &str) -> Vec<OsString> {
    vec![
        "--variant=minbase".into(),
        "--mode=auto".into(),
        format!("--include={}", PACKAGES.join(",")).into(),
        // Keep the tree small: no documentation.
        "--dpkgopt=path-exclude=/usr/share/{doc,man,info}/*".into(),
        "trixie".into(),
        dir.as_os_str().to_owned(),
        repo_source_line.into(),
    ]
}

/// Runs `expr`, printing its output line by line (prefixed by `label`) and
/// keeping the last lines for the error message.
pub fn run_streaming(expr: &duct::Expression, command: &str, label: &str) -> Result<(), ToolError> {
    let spawn_err = |source| ToolError::Spawn {
        command: command.to_string(),
        source,
    };
    let reader = expr
        .stderr_to_stdout()
        .stdin_null()
        .unchecked()
        .reader()
        .map_err(spawn_err)?;
    let mut last: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
    for line in BufReader::new(&reader).split(b'\n') {
        let line = line.map_err(spawn_err)?;
        let line = String::from_utf8_lossy(&line).trim_end().to_string();
        eprintln!("  [{label}] {line}");
        if last.len() == TAIL_LINES {
            last.pop_front();
        }
        last.push_back(line);
    }
    let out = reader
        .try_wait()
        .map_err(spawn_err)?
        .ok_or_else(|| spawn_err(std::io::Error::other("process still running after EOF")))?;
    if !out.status.success() {
        return Err(ToolError::Failed {
            command: command.to_string(),
            status: out.status,
            stderr_tail: Vec::from(last).join("\n"),
        });
    }
    Ok(())
}

/// `program arg…` with arguments quoted where needed.
pub fn command_line<S: AsRef<OsStr>>(program: &str, args: &[S]) -> String {
    let mut s = program.to_string();
    for a in args {
        s.push(' ');
        s.push_str(&hostutil::shell_word(&a.as_ref().to_string_lossy()));
    }
    s
}

/// The last `n` lines of `text`.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Resolves `rel` inside `root`, following symlinks as if `root` were `/`.
fn resolve_in_tree(root: &Path, rel: &Path) -> Result<PathBuf> {
    let mut pending: Vec<OsString> = Vec::new();
    push_components(&mut pending, rel);
    let mut done: Vec<OsString> = Vec::new();
    let mut hops = 0;
    while let Some(c) = pending.pop() {
        if c == ".." {
            done.pop();
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(&done);
        candidate.push(&c);
        match std::fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > 40 {
                    bail!(
                        "too many symlinks resolving {} in {}",
                        rel.display(),
                        root.display()
                    );
                }
                let target = std::fs::read_link(&candidate)
                    .with_context(|| format!("reading link {}", candidate.display()))?;
                if target.is_absolute() {
                    done.clear();
                }
                push_components(&mut pending, &target);
            }
            _ => done.push(c),
        }
    }
    let mut out = root.to_path_buf();
    out.extend(&done);
    Ok(out)
}

/// Pushes the normal components of `p` onto the stack `pending` so that the
/// first component is popped first.
fn push_components(pending: &mut Vec<OsString>, p: &Path) {
    let comps: Vec<OsString> = p
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    pending.extend(comps.into_iter().rev());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_symlinks_inside_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::create_dir_all(root.join("etc/alternatives")).unwrap();
        std::fs::write(root.join("usr/bin/real"), b"x").unwrap();
        std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
        std::os::unix::fs::symlink("/usr/bin/real", root.join("etc/alternatives/tool")).unwrap();
        std::os::unix::fs::symlink("/etc/alternatives/tool", root.join("usr/bin/tool")).unwrap();
        std::os::unix::fs::symlink("../bin/real", root.join("usr/bin/rel")).unwrap();
        assert_eq!(
            resolve_in_tree(root, Path::new("bin/tool")).unwrap(),
            root.join("usr/bin/real")
        );
        assert_eq!(
            resolve_in_tree(root, Path::new("usr/bin/rel")).unwrap(),
            root.join("usr/bin/real")
        );
        assert_eq!(
            resolve_in_tree(root, Path::new("/usr/bin/missing")).unwrap(),
            root.join("usr/bin/missing")
        );
    }

    #[test]
    fn symlink_loops_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("b", dir.path().join("a")).unwrap();
        std::os::unix::fs::symlink("a", dir.path().join("b")).unwrap();
        assert!(resolve_in_tree(dir.path(), Path::new("a")).is_err());
    }

    #[test]
    fn command_lines_are_quoted() {
        assert_eq!(
            command_line("mke2fs", &["-L", "root", "a b", "it's", ""]),
            "mke2fs -L root 'a b' 'it'\\''s' ''"
        );
    }

    #[test]
    fn environment_is_replaced_and_extended() {
        let dir = tempfile::tempdir().unwrap();
        let tree = ToolsTree {
            root: dir.path().to_path_buf(),
        };
        let (program, argv) = tree.argv("mcopy", ["-m".into()].into_iter());
        assert_eq!(program, dir.path().join("usr/lib64/ld-linux-x86-64.so.2"));
        assert_eq!(argv[3], "--argv0");
        assert_eq!(argv[4], "mcopy");
        assert_eq!(argv[6], "-m");
        let expr = tree.command_with_env("x", ["y"], [("TZ", "Europe/Berlin"), ("A", "b")]);
        let dbg = format!("{expr:?}");
        assert!(
            dbg.contains("Europe/Berlin") && !dbg.contains("\"UTC\""),
            "{dbg}"
        );
        assert!(dbg.contains("C.UTF-8"), "{dbg}");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }

    #[test]
    fn mmdebstrap_gets_the_source_line_last() {
        let args = mmdebstrap_args(Path::new("/t/x"), "deb file:///r trixie main");
        assert_eq!(args.last().unwrap(), "deb file:///r trixie main");
        assert!(args.iter().any(|a| {
            a.to_string_lossy()
                .starts_with("--include=e2fsprogs,libarchive13t64,")
        }));
    }
}
