//! Host prerequisites: what later stages run, checked (and on Debian as root, installed).
//!
//! `build-image` and `vm-test` call [`ensure`] first, so a fresh Debian
//! machine needs nothing installed by hand.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::host::{self, HostEnv};

/// How a prerequisite is found.
#[derive(Debug, Clone, Copy)]
pub enum Lookup {
    /// A program: any of `names` on `PATH`, else in `also` (Debian
    /// directories outside a user's `PATH`); `env`, when set, names the
    /// program itself.
    Program {
        /// File names that satisfy it.
        names: &'static [&'static str],
        /// Directories tried after `PATH`.
        also: &'static [&'static str],
        /// A variable naming the program explicitly.
        env: Option<&'static str>,
    },
    /// A data file: the variable `env` if set, else the first existing of
    /// `defaults` (Debian's places).
    File {
        /// The variable naming the file (`docs/cli.md`, "Environment").
        env: &'static str,
        /// Debian's paths, most preferred first.
        defaults: &'static [&'static str],
    },
}

/// One prerequisite: how to find it, and the packages that provide it.
#[derive(Debug, Clone, Copy)]
pub struct Requirement {
    /// What it is for, in a few words.
    pub purpose: &'static str,
    /// Where it is looked for.
    pub lookup: Lookup,
    /// The Debian package that provides it.
    pub package: &'static str,
    /// The nixpkgs attribute that provides it.
    pub nixpkgs: &'static str,
}

impl Requirement {
    /// The program names it provides (none for a data file).
    pub fn programs(&self) -> &'static [&'static str] {
        match self.lookup {
            Lookup::Program { names, .. } => names,
            Lookup::File { .. } => &[],
        }
    }

    /// Its short name: the program, or the variable of a data file.
    pub fn name(&self) -> &'static str {
        match self.lookup {
            Lookup::Program { names, .. } => names.first().copied().unwrap_or("?"),
            Lookup::File { env, .. } => env,
        }
    }

    /// Where it is on this host as `env` describes it, if anywhere.
    pub fn find(&self, env: &HostEnv) -> Option<PathBuf> {
        match self.lookup {
            Lookup::Program {
                names,
                also,
                env: var,
            } => match var.and_then(|v| env.var(v)) {
                Some(p) => Some(p.to_path_buf()).filter(|p| p.is_file()),
                None => env.program(names, also),
            },
            Lookup::File { env: var, defaults } => env.file(var, defaults),
        }
    }
}

/// A program on `PATH` (or Debian's `/usr/sbin`, `/sbin`).
const fn program(names: &'static [&'static str]) -> Lookup {
    Lookup::Program {
        names,
        also: &["/usr/sbin", "/sbin"],
        env: None,
    }
}

/// Everything the stages and tests run on the host.
pub const REQUIREMENTS: &[Requirement] = &[
    Requirement {
        purpose: "bootstrap Debian root filesystems",
        lookup: program(&["mmdebstrap"]),
        package: "mmdebstrap",
        nixpkgs: "mmdebstrap",
    },
    Requirement {
        purpose: "verify Debian release signatures",
        lookup: program(&["gpgv"]),
        package: "gpgv",
        nixpkgs: "gnupg",
    },
    Requirement {
        purpose: "Debian archive signing keys",
        lookup: Lookup::File {
            env: host::DEBIAN_KEYRING_ENV,
            defaults: &[host::DEBIAN_KEYRING_DEFAULT],
        },
        package: "debian-archive-keyring",
        nixpkgs: "debian-archive-keyring",
    },
    Requirement {
        purpose: "read .deb control fields for the local package repository",
        lookup: program(&["dpkg-deb"]),
        package: "dpkg",
        nixpkgs: "dpkg",
    },
    Requirement {
        purpose: "compress images (--compress) and zstd-compressed .debs",
        lookup: program(&["zstd"]),
        package: "zstd",
        nixpkgs: "zstd",
    },
    Requirement {
        purpose: "boot images in vm-test",
        lookup: Lookup::Program {
            names: &["qemu-system-x86_64"],
            also: &[],
            env: Some(host::QEMU_ENV),
        },
        package: "qemu-system-x86",
        nixpkgs: "qemu",
    },
    Requirement {
        purpose: "copy-on-write overlays in vm-test",
        lookup: program(&["qemu-img"]),
        package: "qemu-utils",
        nixpkgs: "qemu",
    },
    Requirement {
        purpose: "UEFI firmware code for vm-test",
        lookup: Lookup::File {
            env: host::OVMF_CODE_ENV,
            defaults: &[
                "/usr/share/OVMF/OVMF_CODE_4M.fd",
                "/usr/share/OVMF/OVMF_CODE.fd",
            ],
        },
        package: "ovmf",
        nixpkgs: "OVMF",
    },
    Requirement {
        purpose: "UEFI variable store template for vm-test",
        lookup: Lookup::File {
            env: host::OVMF_VARS_ENV,
            defaults: &[
                "/usr/share/OVMF/OVMF_VARS_4M.fd",
                "/usr/share/OVMF/OVMF_VARS.fd",
            ],
        },
        package: "ovmf",
        nixpkgs: "OVMF",
    },
    Requirement {
        purpose: "DHCP on vm-test's test network",
        lookup: program(&["dnsmasq"]),
        package: "dnsmasq-base",
        nixpkgs: "dnsmasq",
    },
    Requirement {
        purpose: "map secret hits to files in vm-test's disk scans (SEC-1, SEC-3), read-only on the partition's offset",
        lookup: program(&["debugfs"]),
        package: "e2fsprogs",
        nixpkgs: "e2fsprogs",
    },
    Requirement {
        purpose: "make the volume of another filesystem that vm-test's UPD-4 attaches",
        lookup: program(&["mkfs.ext4"]),
        package: "e2fsprogs",
        nixpkgs: "e2fsprogs",
    },
    Requirement {
        purpose: "find the root partition for vm-test's disk scans (SEC-1, SEC-3)",
        lookup: program(&["sfdisk"]),
        package: "fdisk",
        nixpkgs: "util-linux",
    },
    Requirement {
        purpose: "network namespaces and taps for vm-test's external peer",
        lookup: program(&["ip"]),
        package: "iproute2",
        nixpkgs: "iproute2",
    },
    Requirement {
        purpose: "deploy and host keys for vm-test's git remote (INF-2)",
        lookup: program(&["ssh-keygen"]),
        package: "openssh-client",
        nixpkgs: "openssh",
    },
    Requirement {
        purpose: "serve vm-test's git remote to the guest (INF-2)",
        lookup: program(&["sshd"]),
        package: "openssh-server",
        nixpkgs: "openssh",
    },
    Requirement {
        purpose: "build Tailscale from its Go module source (image.lock pins the Go version; \
                  an older Go can fetch it with GOTOOLCHAIN=<version>, docs/tailscale.md), \
                  and vm-test's test tailnet (vm-tests/tailnet)",
        lookup: Lookup::Program {
            names: &["go"],
            also: &["/usr/local/go/bin", "/usr/lib/go/bin"],
            env: None,
        },
        package: "golang-go",
        nixpkgs: "go",
    },
    Requirement {
        purpose: "vm-test's git remote: a bare repository behind git-shell (INF-2)",
        lookup: program(&["git"]),
        package: "git",
        nixpkgs: "git",
    },
];

/// The packages that provide a prerequisite, for the fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Packages {
    /// The Debian package.
    pub debian: &'static str,
    /// The nixpkgs attribute.
    pub nixpkgs: &'static str,
}

/// The outcome of one check.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Finding {
    /// What was checked.
    pub what: String,
    /// Whether it is fine.
    pub ok: bool,
    /// Where it was found, if anywhere.
    pub found: Option<PathBuf>,
    /// Details or the fix.
    pub detail: String,
    /// The packages that provide it (`None` for checks no package fixes).
    pub package: Option<Packages>,
}

/// Checks every requirement plus `/dev/kvm` and free disk at `work_dirs`
/// (no loop device: the disk stage and vm-test's scans address
/// filesystems by their offset in the image).
pub fn check(work_dirs: &[&Path]) -> Vec<Finding> {
    check_in(&HostEnv::current(), work_dirs)
}

/// [`check`] with `PATH` and the location variables of `env`.
pub fn check_in(env: &HostEnv, work_dirs: &[&Path]) -> Vec<Finding> {
    let mut out = Vec::new();
    for r in REQUIREMENTS {
        let found = r.find(env);
        let how = match r.lookup {
            Lookup::Program { env: Some(var), .. } => format!("on PATH, or ${var}"),
            Lookup::Program { .. } => "on PATH".to_string(),
            Lookup::File { env: var, defaults } => match env.var(var) {
                Some(p) => format!("${var} = {}", p.display()),
                None => format!("{} (or set ${var})", defaults.join(" or ")),
            },
        };
        out.push(Finding {
            what: format!("{} ({})", r.name(), r.purpose),
            ok: found.is_some(),
            detail: match &found {
                Some(p) => format!("found {}", p.display()),
                None => format!(
                    "missing, looked {how}: install the Debian package `{}` (nixpkgs: `{}`)",
                    r.package, r.nixpkgs
                ),
            },
            found,
            package: Some(Packages {
                debian: r.package,
                nixpkgs: r.nixpkgs,
            }),
        });
    }
    let kvm = Path::new("/dev/kvm").exists();
    out.push(Finding {
        what: "/dev/kvm".into(),
        ok: true,
        found: kvm.then(|| PathBuf::from("/dev/kvm")),
        detail: if kvm {
            "present (vm-test probes whether it works and falls back to TCG)".into()
        } else {
            "absent: vm-test uses TCG (slower, same result)".into()
        },
        package: None,
    });
    for dir in work_dirs {
        let (ok, detail) = match free_bytes(dir) {
            Ok(free) => {
                let gib = free as f64 / (1u64 << 30) as f64;
                if free >= 20 << 30 {
                    (true, format!("{gib:.1} GiB free"))
                } else {
                    (
                        false,
                        format!(
                            "{gib:.1} GiB free; a build needs about 20 GiB: free space or pass another directory"
                        ),
                    )
                }
            }
            Err(e) => (false, format!("{e:#}")),
        };
        out.push(Finding {
            what: format!("free space at {}", dir.display()),
            ok,
            found: None,
            detail,
            package: None,
        });
    }
    out
}

/// `doctor --json`: `{"ok": …, "findings": [{"what", "ok", "found", "detail", "package": {"debian", "nixpkgs"}}, …]}`
/// (docs/cli.md).
pub fn to_json(findings: &[Finding]) -> String {
    #[derive(serde::Serialize)]
    struct Report<'a> {
        ok: bool,
        findings: &'a [Finding],
    }
    let report = Report {
        ok: findings.iter().all(|f| f.ok),
        findings,
    };
    // Strings and booleans only: serializing cannot fail.
    serde_json::to_string_pretty(&report).unwrap_or_default()
}

fn free_bytes(dir: &Path) -> Result<u64> {
    // The directory may not exist yet: ask about its nearest existing ancestor.
    let mut probe: PathBuf = dir.to_path_buf();
    while !probe.exists() {
        if !probe.pop() {
            bail!("no existing ancestor of {}", dir.display());
        }
    }
    let out = duct::cmd!("df", "--output=avail", "-B1", &probe)
        .stderr_capture()
        .read()
        .with_context(|| format!("running df on {}", probe.display()))?;
    out.lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .with_context(|| format!("unexpected df output for {}: {out}", probe.display()))
}

/// Checks, and when `install` is set and this is Debian as root, installs
/// what is missing with apt. Fails when something is still missing.
pub fn ensure(work_dirs: &[&Path], install: bool) -> Result<Vec<Finding>> {
    let findings = check(work_dirs);
    let missing = missing_packages(&findings, |p| p.debian);
    if missing.is_empty() {
        return finish(findings);
    }
    if !install {
        return finish(findings);
    }
    if !Path::new("/etc/debian_version").exists() {
        let nix = missing_packages(&findings, |p| p.nixpkgs);
        bail!(
            "missing host tools and this is not Debian: install them by hand (Debian packages: {}; \
             nixpkgs: {}; or `nix develop` in this checkout), or point PATH and the variables of \
             docs/cli.md at them",
            missing.join(", "),
            nix.join(", ")
        );
    }
    if !is_root() {
        bail!(
            "missing host packages ({}): run `cargo xtask doctor` as root, or `sudo apt-get install {}`",
            missing.join(", "),
            missing.join(" ")
        );
    }
    eprintln!("doctor: installing {}", missing.join(" "));
    let backports = needs_backports(&missing)?;
    if let Some(source) = &backports {
        enable_backports(source)?;
    }
    let mut cmd = vec![
        "apt-get".to_string(),
        "install".into(),
        "-y".into(),
        "-q".into(),
    ];
    if let Some(b) = &backports {
        cmd.push("-t".into());
        cmd.push(b.suite.clone());
    }
    cmd.extend(missing.iter().map(|p| p.to_string()));
    duct::cmd("apt-get", ["update", "-q"])
        .run()
        .context("apt-get update failed")?;
    let no_starts = NoServiceStarts::install(Path::new(POLICY_RC_D))?;
    let installed = duct::cmd(&cmd[0], &cmd[1..])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run()
        .with_context(|| format!("`{}` failed", cmd.join(" ")));
    drop(no_starts);
    installed?;
    finish(check(work_dirs))
}

/// The packages (`which` of each: Debian or nixpkgs) that provide what
/// `findings` lack, each once (one package can provide several).
fn missing_packages(
    findings: &[Finding],
    which: fn(Packages) -> &'static str,
) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = findings
        .iter()
        .filter(|f| !f.ok)
        .filter_map(|f| f.package.map(which))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Debian's hook that `invoke-rc.d` asks before starting a service.
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

/// While it lives, a `policy-rc.d` that forbids every service start (exit
/// 101), so that installing `openssh-server` starts no SSH daemon on this
/// host (as `.ci/run` does). A `policy-rc.d` already there is left alone.
struct NoServiceStarts {
    created: Option<PathBuf>,
}

impl NoServiceStarts {
    fn install(path: &Path) -> Result<NoServiceStarts> {
        use std::os::unix::fs::PermissionsExt;
        if path.exists() {
            return Ok(NoServiceStarts { created: None });
        }
        std::fs::write(path, "#!/bin/sh\nexit 101\n")
            .with_context(|| format!("writing {}", path.display()))?;
        let guard = NoServiceStarts {
            created: Some(path.to_path_buf()),
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("making {} executable", path.display()))?;
        Ok(guard)
    }
}

impl Drop for NoServiceStarts {
    fn drop(&mut self) {
        if let Some(path) = &self.created
            && let Err(e) = std::fs::remove_file(path)
        {
            eprintln!("doctor: could not remove {}: {e}", path.display());
        }
    }
}

fn finish(findings: Vec<Finding>) -> Result<Vec<Finding>> {
    let bad: Vec<String> = findings
        .iter()
        .filter(|f| !f.ok)
        .map(|f| format!("  {}: {}", f.what, f.detail))
        .collect();
    if bad.is_empty() {
        Ok(findings)
    } else {
        bail!(
            "host prerequisites missing:\n{}\nrun `cargo xtask doctor` (as root it installs them)",
            bad.join("\n")
        )
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

struct Backports {
    suite: String,
    uri: String,
}

/// QEMU from the release would conflict with a backported `qemu-utils`
/// already on the host (as on this project's build machines): then take
/// `qemu-system-x86` from the same backports suite.
fn needs_backports(missing: &[&str]) -> Result<Option<Backports>> {
    if !missing.contains(&"qemu-system-x86") {
        return Ok(None);
    }
    let installed = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "qemu-utils"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    if !installed.contains("bpo") {
        return Ok(None);
    }
    let os = std::fs::read_to_string("/etc/os-release").context("reading /etc/os-release")?;
    let codename = os
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|c| c.trim_matches('"').to_string())
        .context("/etc/os-release has no VERSION_CODENAME")?;
    let archives = crate::debian::mirror::host_archives(Path::new("/etc/apt"))?;
    Ok(Some(Backports {
        suite: format!("{codename}-backports"),
        uri: archives.debian,
    }))
}

fn enable_backports(b: &Backports) -> Result<()> {
    let path = Path::new("/etc/apt/sources.list.d/openclaw-image-backports.sources");
    let text = format!(
        "# Added by `cargo xtask doctor`: qemu-system-x86 to match the backported qemu-utils.\n\
         Types: deb\nURIs: {}\nSuites: {}\nComponents: main\n\
         Signed-By: {}\n",
        b.uri,
        b.suite,
        host::DEBIAN_KEYRING_DEFAULT
    );
    crate::fsutil::write_atomic(path, text.as_bytes())
}

#[cfg(test)]
mod tests;
