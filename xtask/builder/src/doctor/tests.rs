//! Every program the host-side code runs by name is either a doctor
//! [`super::Requirement`] or listed in [`ESSENTIAL`] with the reason it needs none.
//!
//! A plain text scan of the host crates (`xtask`, `vm-tests`; not
//! `appliance`, which runs in the guest) for the calls that start a program,
//! or look one up to start it, with the program as a string literal or a
//! `const NAME: &str` of the same file:
//! - `Command::new(P)`, duct's `cmd!(P, …)` and `cmd(P, …)`;
//! - wrappers: vm-tests' `run(P, …)` and `peer_run(&[P, …])`, bench's
//!   `first_line(P, …)` and `measure::run(P, …)`, ci's `step(name, &[P, …])`;
//! - look-ups before a run: `which(P)`, `find_on_path(P)`, `on_path(P)`;
//! - `ip netns exec NS P …` as `["netns", "exec", NS, P, …]`;
//! - `for tool in [P, …]` and `for (…, tool, …) in [(…, P, …), …]`.
//!
//! Not scanned on purpose: the tools tree's `.tool(P)` and `command(P, …)`
//! (the binary comes from the locked Debian tree, not the host), method
//! calls such as the vm-tests machine's `.run(…)` (shell lines run in the
//! guest), and comment lines. A program named through a variable is not
//! seen; the look-up that found it usually is.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::REQUIREMENTS;

/// Why a program the host-side code runs needs no [`super::Requirement`].
enum Why {
    /// From a Debian package marked `Essential: yes`: always installed.
    DebianEssential(&'static str),
    /// Comes with the Rust toolchain that runs `cargo xtask`.
    RustToolchain,
    /// Installed by `.ci/run` (this package) because `cargo test` needs it
    /// before `cargo xtask doctor` runs, and not needed by build or vm-test.
    CiRun(&'static str),
    /// Used only when present; what happens without it.
    Optional(&'static str),
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::DebianEssential(package) => write!(f, "Debian Essential package {package}"),
            Why::RustToolchain => f.write_str("the Rust toolchain"),
            Why::CiRun(package) => write!(f, ".ci/run installs {package}"),
            Why::Optional(what) => write!(f, "optional: {what}"),
        }
    }
}

/// Programs that need no doctor requirement, each with its reason.
const ESSENTIAL: &[(&str, Why)] = &[
    // vm-tests' shell test (runs the guest's command wrapper locally), the
    // net test's `ip netns exec … bash -c`.
    ("bash", Why::DebianEssential("bash")),
    // verify-repro's builds, bench's measure test.
    ("sh", Why::DebianEssential("dash")),
    // doctor's free-space check.
    ("df", Why::DebianEssential("coreutils")),
    // doctor's root check, vm-test's git remote user, the upload tests' sshd.
    ("id", Why::DebianEssential("coreutils")),
    // vm-tests' QEMU watchdog tests (a process to kill).
    ("sleep", Why::DebianEssential("coreutils")),
    // The npm stage's timestamps.
    ("touch", Why::DebianEssential("coreutils")),
    // ESC-2's plant test (bounds a planted command that might wait).
    ("timeout", Why::DebianEssential("coreutils")),
    // The npm runtime's unpacking.
    ("tar", Why::DebianEssential("tar")),
    // verify-repro's second locale.
    ("locale", Why::DebianEssential("libc-bin")),
    // doctor's backports check.
    ("dpkg-query", Why::DebianEssential("dpkg")),
    // bench's version table.
    ("rustc", Why::RustToolchain),
    // The upload tests' SIGINT to their child upload.
    ("kill", Why::CiRun("procps")),
    // ci's flake.nix evaluation (skipped, with a message, without it).
    ("nix-instantiate", Why::CiRun("nix-bin")),
    // `cargo xtask upload` and its tests; upload checks for it itself.
    ("ssh", Why::CiRun("openssh-client")),
    (
        "apt-get",
        Why::Optional(
            "doctor's installer, run only on Debian (where apt is priority required); \
             elsewhere doctor names the packages to install by hand",
        ),
    ),
    (
        "npm",
        Why::Optional(
            "read only for the host's registry setting when neither --npm-registry nor \
             npm_config_registry is given; without it the build asks for one",
        ),
    ),
    (
        "diffoscope",
        Why::Optional("verify-repro runs it on a mismatch only when installed"),
    ),
    (
        "iptables",
        Why::Optional(
            "only when the host filters bridged frames; vm-test looks it up and logs a warning",
        ),
    ),
    (
        "ip6tables",
        Why::Optional(
            "only when the host filters bridged frames; vm-test looks it up and logs a warning",
        ),
    ),
    (
        "curl",
        Why::Optional("vm-tests' net test skips its HTTP part without it"),
    ),
];

/// Calls whose argument at the index names the program they run or look up
/// (written without the `(` so that this file does not match itself), and
/// whether a method call (`x.name(`) counts: `.run(` runs in the guest.
const CALLS: &[(&str, usize, bool)] = &[
    ("Command::new", 0, false),
    ("cmd!", 0, false),
    ("cmd", 0, false),
    ("run", 0, false),
    ("peer_run", 0, true),
    ("first_line", 0, false),
    ("step", 1, false),
    ("which", 0, false),
    ("find_on_path", 0, false),
    ("on_path", 0, false),
];

/// The host-side crates' directories, from the workspace root.
const HOST_DIRS: &[&str] = &[
    "xtask/src",
    "xtask/builder",
    "xtask/bench",
    "xtask/disk",
    "xtask/hostutil",
    "xtask/oci",
    "xtask/repro",
    "xtask/hetzner",
    "vm-tests",
];

/// One place that runs a program by name.
#[derive(Debug, Clone)]
struct Spawn {
    /// The program's file name.
    program: String,
    /// `file:line`, the file relative to the workspace root.
    place: String,
    /// Which pattern found it.
    pattern: String,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `.rs` file below `dir`, skipping `target` directories.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source with comment lines blanked (line numbers kept).
fn without_comment_lines(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.trim_start().starts_with("//") {
                ""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `const NAME: &str = "value";` of a file.
fn str_consts(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let l = l.strip_prefix("pub ").unwrap_or(l);
            let (name, value) = l.strip_prefix("const ")?.split_once(": &str = \"")?;
            let value = value.strip_suffix("\";")?;
            Some((name.to_string(), value.to_string()))
        })
        .collect()
}

/// The byte just past the string or char literal starting at `i`, or `i + 1`.
fn skip_literal(b: &[u8], i: usize) -> usize {
    match b[i] {
        b'"' => {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            j + 1
        }
        b'r' if b.get(i + 1).is_some_and(|&c| c == b'#' || c == b'"') => {
            let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            let body = i + 2 + hashes;
            match b[body.min(b.len())..]
                .windows(close.len())
                .position(|w| w == close)
            {
                Some(p) => body + p + close.len(),
                None => b.len(),
            }
        }
        // A char literal ('x', '\n'); a lifetime ('a) is left alone.
        b'\'' if b.get(i + 1) == Some(&b'\\') => {
            i + 2 + b[i + 2..].iter().position(|&c| c == b'\'').unwrap_or(0) + 1
        }
        b'\'' if b.get(i + 2) == Some(&b'\'') => i + 3,
        _ => i + 1,
    }
}

/// The comma-separated items from `start` up to the bracket that closes the
/// list `start` is in (or the end of the text), trimmed.
fn list_items(text: &str, start: usize) -> Vec<&str> {
    let b = text.as_bytes();
    let (mut items, mut depth, mut from, mut i) = (Vec::new(), 0usize, start, start);
    while i < b.len() {
        match b[i] {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' if depth == 0 => break,
            b')' | b']' | b'}' => depth -= 1,
            b',' if depth == 0 => {
                items.push(text[from..i].trim());
                from = i + 1;
            }
            _ => {}
        }
        // An `r` ending a word (`for`) starts no raw string.
        let word_r = b[i] == b'r' && i > 0 && is_ident(b[i - 1] as char);
        i = if word_r { i + 1 } else { skip_literal(b, i) };
    }
    let last = text[from..i.min(b.len())].trim();
    if !last.is_empty() {
        items.push(last);
    }
    items
}

/// The program an argument names: a string literal (`"x"`, `&"x".into()`),
/// a `const` of the file, or the first item of an array (`&[P, …]`).
fn program_of(arg: &str, consts: &BTreeMap<String, String>) -> Option<String> {
    let arg = arg.trim().trim_start_matches('&').trim_start();
    if let Some(rest) = arg.strip_prefix('[').or_else(|| arg.strip_prefix("vec![")) {
        let first = *list_items(rest, 0).first()?;
        return program_of(first, consts);
    }
    let path = if let Some(rest) = arg.strip_prefix('"') {
        rest.split('"').next()?.to_string()
    } else if arg.starts_with(|c: char| c.is_ascii_uppercase())
        && arg
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    {
        consts.get(arg)?.clone()
    } else {
        return None;
    };
    Some(path.rsplit('/').next().unwrap_or(&path).to_string())
}

/// The 1-based line of byte `at`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at].matches('\n').count() + 1
}

/// Every program `text` (the file `name`) runs by name.
fn spawns_in(name: &str, text: &str) -> Vec<Spawn> {
    let consts = str_consts(text);
    let text = without_comment_lines(text);
    let mut out = Vec::new();
    let mut found = |at: usize, pattern: &str, arg: Option<&str>| {
        if let Some(program) = arg.and_then(|a| program_of(a, &consts)) {
            out.push(Spawn {
                program,
                place: format!("{name}:{}", line_of(&text, at)),
                pattern: pattern.to_string(),
            });
        }
    };
    for (call, index, method) in CALLS {
        let needle = format!("{call}(");
        for (at, _) in text.match_indices(&needle) {
            // Not a longer name (`peer_run(` is not `run(`), and a method
            // only where that counts.
            let before = text[..at].chars().next_back();
            if before.is_some_and(|c| is_ident(c) || (c == '.' && !method)) {
                continue;
            }
            let items = list_items(&text, at + needle.len());
            found(at, call, items.get(*index).copied());
        }
    }
    // `ip netns exec NS P …`.
    let netns = format!("{:?}, {:?},", "netns", "exec");
    for (at, _) in text.match_indices(&netns) {
        let items = list_items(&text, at + netns.len());
        found(at, "ip netns exec", items.get(1).copied());
    }
    // `for tool in [P, …]` and `for (…, tool, …) in [(…, P, …), …]`.
    for (at, _) in text.match_indices("for ") {
        if text[..at].chars().next_back().is_some_and(is_ident) {
            continue;
        }
        let line = text[at + 4..].lines().next().unwrap_or_default();
        let Some((binding, _)) = line.split_once(" in [") else {
            continue;
        };
        let names: Vec<&str> = binding
            .trim_matches(|c| c == '(' || c == ')')
            .split(',')
            .map(str::trim)
            .collect();
        let Some(position) = names.iter().position(|n| *n == "tool") else {
            continue;
        };
        let start = at + 4 + binding.len() + " in [".len();
        for item in list_items(&text, start) {
            let arg = if names.len() == 1 {
                Some(item)
            } else {
                item.strip_prefix('(')
                    .and_then(|t| list_items(t, 0).get(position).copied())
            };
            found(at, "for tool in", arg);
        }
    }
    out
}

/// Every program the host-side crates run by name (this file excepted: its
/// examples are not calls).
fn host_spawns() -> Vec<Spawn> {
    let root = workspace_root();
    let mut files = Vec::new();
    for dir in HOST_DIRS {
        rust_files(&root.join(dir), &mut files);
    }
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&root).unwrap_or(&file);
        if rel == Path::new(file!()) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        out.extend(spawns_in(&rel.display().to_string(), &text));
    }
    out
}

/// The file names doctor's requirements provide.
fn provided() -> BTreeSet<&'static str> {
    REQUIREMENTS
        .iter()
        .flat_map(|r| r.programs())
        .copied()
        .collect()
}

/// What is wrong with `spawns`: a program with neither a requirement nor an
/// [`ESSENTIAL`] entry, or an entry that is stale.
fn problems(spawns: &[Spawn]) -> Vec<String> {
    let provided = provided();
    let mut out = Vec::new();
    for s in spawns {
        let essential = ESSENTIAL.iter().any(|(p, _)| *p == s.program);
        if !provided.contains(s.program.as_str()) && !essential {
            out.push(format!(
                "`{}` is run at {} ({}), but no doctor requirement provides it: \
                 add a Requirement to doctor::REQUIREMENTS or to the ESSENTIAL list \
                 ({}) with its reason",
                s.program,
                s.place,
                s.pattern,
                file!()
            ));
        }
    }
    for (program, why) in ESSENTIAL {
        if provided.contains(program) {
            out.push(format!(
                "`{program}` is both a doctor requirement and in ESSENTIAL ({why}): drop one"
            ));
        }
        if !spawns.iter().any(|s| s.program == *program) {
            out.push(format!(
                "`{program}` is in ESSENTIAL ({why}) but no scanned call runs it: remove it"
            ));
        }
    }
    out
}

#[test]
fn every_program_run_on_the_host_is_a_doctor_requirement_or_essential() {
    let spawns = host_spawns();
    let mut by_program: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for s in &spawns {
        by_program.entry(&s.program).or_default().push(&s.place);
    }
    for (program, places) in &by_program {
        let how = match REQUIREMENTS.iter().find(|r| r.programs().contains(program)) {
            Some(r) => format!("doctor: {}", r.package),
            None => match ESSENTIAL.iter().find(|(p, _)| p == program) {
                Some((_, why)) => why.to_string(),
                None => "UNCHECKED".to_string(),
            },
        };
        eprintln!("{program} [{how}]: {}", places.join(", "));
    }
    // The scan sees the tree (each form is tested on its own below): the
    // program CI once missed, and one through each kind of call.
    for program in ["sfdisk", "zstd", "sshd", "dnsmasq", "qemu-system-x86_64"] {
        assert!(by_program.contains_key(program), "{by_program:#?}");
    }
    let problems = problems(&spawns);
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

#[test]
fn the_scan_sees_each_form_and_reports_an_unknown_program() {
    let src = r#"
const SSHD: &str = "/usr/sbin/sshd";
fn f() {
    // Command::new("commented-out")
    let _ = duct::cmd!("foo", "a", &x);
    let _ = duct::cmd(
        "bar",
        ["b"],
    );
    Command::new(SSHD).arg("-D");
    Command::new(tool_variable);
    machine.run("guest-only --flag");
    run("ip", &args);
    net.peer_run(&["curl", "-fsS"]);
    step("parse", &["nix-instantiate", "--parse"]);
    cmd.args(["netns", "exec", &ns(1, 2), "dnsmasq"]);
    for (tool, package) in [("ip", "iproute2"), ("dnsmasq", "dnsmasq-base")] {}
    for tool in ["ssh", "ssh-keygen"] {}
    let _ = ToolsTree::tool(&t, "mke2fs");
}
"#;
    let spawns = spawns_in("x.rs", src);
    let mut got: Vec<(&str, &str)> = spawns
        .iter()
        .map(|s| (s.program.as_str(), s.place.as_str()))
        .collect();
    got.sort();
    let mut want = vec![
        ("sshd", "x.rs:10"),
        ("foo", "x.rs:5"),
        ("bar", "x.rs:6"),
        ("ip", "x.rs:13"),
        ("curl", "x.rs:14"),
        ("nix-instantiate", "x.rs:15"),
        ("dnsmasq", "x.rs:16"),
        ("ip", "x.rs:17"),
        ("dnsmasq", "x.rs:17"),
        ("ssh", "x.rs:18"),
        ("ssh-keygen", "x.rs:18"),
    ];
    want.sort();
    assert_eq!(got, want);
    let problems = problems(&spawns);
    for unknown in ["foo", "bar"] {
        assert!(
            problems
                .iter()
                .any(|p| p.contains(&format!("`{unknown}` is run at x.rs:"))
                    && p.contains(
                        "add a Requirement to doctor::REQUIREMENTS or to the ESSENTIAL list"
                    )),
            "{problems:#?}"
        );
    }
}

#[test]
fn json_shape() {
    let findings = [
        super::Finding {
            what: "mmdebstrap (bootstrap Debian root filesystems)".into(),
            ok: true,
            found: Some("/usr/bin/mmdebstrap".into()),
            detail: "found /usr/bin/mmdebstrap".into(),
            package: Some(super::Packages {
                debian: "mmdebstrap",
                nixpkgs: "mmdebstrap",
            }),
        },
        super::Finding {
            what: "VMTEST_OVMF_CODE (UEFI firmware code for vm-test)".into(),
            ok: false,
            found: None,
            detail:
                "missing, looked $VMTEST_OVMF_CODE = /nix/store/x/FV/OVMF_CODE.fd: install the \
                     Debian package `ovmf` (nixpkgs: `OVMF`)"
                    .into(),
            package: Some(super::Packages {
                debian: "ovmf",
                nixpkgs: "OVMF",
            }),
        },
        super::Finding {
            what: "free space at /src/target".into(),
            ok: false,
            found: None,
            detail: "3.1 GiB free; a build needs about 20 GiB".into(),
            package: None,
        },
    ];
    insta::assert_snapshot!(super::to_json(&findings));
}

/// A stub program: the look-up needs a file, not the tool.
fn stub(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Doctor passes with every tool in a non-Debian layout (a Nix-like
/// profile of symlinks): programs found on `PATH`, data files through
/// their variables, each where the layout puts it. A tool this host lacks
/// is a stub script: the test is about the look-up, not the tools.
#[test]
fn passes_with_tools_in_a_non_debian_layout() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("profile");
    let bin = profile.join("bin");
    let share = profile.join("share");
    let stubs = dir.path().join("stubs");
    for d in [&bin, &share, &stubs] {
        std::fs::create_dir_all(d).unwrap();
    }
    let real = super::HostEnv::current();
    for r in REQUIREMENTS {
        let link = match r.lookup {
            super::Lookup::Program { names, .. } => bin.join(names[0]),
            super::Lookup::File { env, .. } => share.join(env),
        };
        let target = match r.find(&real) {
            Some(p) => p,
            None => {
                let s = stubs.join(r.name());
                stub(&s);
                s
            }
        };
        std::os::unix::fs::symlink(&target, &link).unwrap();
    }
    let vars: Vec<(&str, PathBuf)> = REQUIREMENTS
        .iter()
        .filter_map(|r| match r.lookup {
            super::Lookup::File { env, .. } => Some((env, share.join(env))),
            super::Lookup::Program { .. } => None,
        })
        .collect();
    let var_refs: Vec<(&str, &Path)> = vars.iter().map(|(k, v)| (*k, v.as_path())).collect();
    let env = super::HostEnv::new(std::env::join_paths([&bin]).unwrap(), &var_refs);
    let findings = super::check_in(&env, &[]);
    let bad: Vec<_> = findings.iter().filter(|f| !f.ok).collect();
    assert!(bad.is_empty(), "{bad:#?}");
    for f in findings.iter().filter(|f| f.package.is_some()) {
        let found = f.found.as_deref().unwrap();
        assert!(
            found.starts_with(&profile),
            "{} found at {}",
            f.what,
            found.display()
        );
    }

    // The same layout less one program and one file: each is missing, named
    // with its Debian and nixpkgs package.
    std::fs::remove_file(bin.join("mmdebstrap")).unwrap();
    std::fs::remove_file(share.join("OPENCLAW_DEBIAN_KEYRING")).unwrap();
    let findings = super::check_in(&env, &[]);
    let missing: Vec<&str> = findings
        .iter()
        .filter(|f| !f.ok)
        .map(|f| f.detail.as_str())
        .collect();
    assert_eq!(missing.len(), 2, "{missing:#?}");
    assert!(
        missing[0].contains("`mmdebstrap` (nixpkgs: `mmdebstrap`)"),
        "{missing:#?}"
    );
    assert!(
        missing[1].contains("`debian-archive-keyring` (nixpkgs: `debian-archive-keyring`)")
            && missing[1].contains("$OPENCLAW_DEBIAN_KEYRING ="),
        "{missing:#?}"
    );
}

/// The variables `flake.nix` sets: `NAME = …;` with an all-capitals NAME.
fn flake_vars(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| {
            let (name, _) = l.trim_start().split_once(" = ")?;
            let upper = name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            (upper && !name.is_empty()).then(|| name.to_string())
        })
        .collect()
}

/// The variables of the table under "## Environment" in `docs/cli.md`.
fn documented_vars(text: &str) -> BTreeSet<String> {
    let section = text.split("\n## Environment").nth(1).unwrap_or("");
    let section = section.split("\n## ").next().unwrap_or("");
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split_once('`'))
        .map(|(name, _)| name.to_string())
        .collect()
}

/// Whether the host-side code reads `name`: its literal in a file that
/// reads the environment (this file excepted).
fn read_in_code(name: &str) -> Vec<String> {
    let root = workspace_root();
    let mut files = Vec::new();
    for dir in HOST_DIRS {
        rust_files(&root.join(dir), &mut files);
    }
    files
        .iter()
        .filter(|f| f.strip_prefix(&root).unwrap_or(f) != Path::new(file!()))
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            text.contains(&format!("\"{name}\"")) && text.contains("env::var")
        })
        .map(|f| f.strip_prefix(&root).unwrap_or(f).display().to_string())
        .collect()
}

#[test]
fn flake_sets_the_variables_the_code_reads_and_the_docs_name() {
    let root = workspace_root();
    let flake = flake_vars(&std::fs::read_to_string(root.join("flake.nix")).unwrap());
    let documented = documented_vars(&std::fs::read_to_string(root.join("docs/cli.md")).unwrap());
    let declared: BTreeSet<String> = crate::host::LOCATION_VARS
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    assert!(
        flake.contains("VMTEST_OVMF_CODE"),
        "the scan sees flake.nix: {flake:?}"
    );
    assert_eq!(
        documented, declared,
        "docs/cli.md's Environment table and host::LOCATION_VARS differ"
    );
    for name in &flake {
        assert!(
            declared.contains(name),
            "flake.nix sets {name}, which is no location variable of host::LOCATION_VARS"
        );
    }
    for name in &declared {
        let readers = read_in_code(name);
        assert!(
            !readers.is_empty(),
            "{name} is documented but no code reads it"
        );
    }
    for r in REQUIREMENTS {
        if let super::Lookup::File { env, .. } = r.lookup {
            assert!(
                flake.contains(env),
                "flake.nix does not set {env} ({}): the dev shell would fall back to Debian's path",
                r.purpose
            );
        }
    }
}

#[test]
fn flake_and_doc_scans() {
    let flake = "  x = {\n    FOO_1 = \"${a}\";\n    packages = [ ];\n    lower = 1;\n  };\n";
    assert_eq!(flake_vars(flake), BTreeSet::from(["FOO_1".to_string()]));
    let doc = "# x\n| `NOT` |\n## Environment: where\n| variable |\n|---|\n| `A_B` | a |\n## Next\n| `C` |\n";
    assert_eq!(documented_vars(doc), BTreeSet::from(["A_B".to_string()]));
}
