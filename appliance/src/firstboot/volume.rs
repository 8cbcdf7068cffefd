//! The state volume (UPD-1..4): durable state on a Hetzner Volume, so that
//! `hcloud server rebuild` (a new root disk from a newer image) keeps it.
//!
//! Run on every boot by [`VOLUME_UNIT`], before `tailscaled`, first boot
//! and the gateway, which all require it:
//! 1. Find the volume: `/dev/disk/by-id/scsi-0HC_Volume_<id>`. None: say on
//!    the console that a rebuild loses state (UPD-3) — unless this root
//!    disk has used a volume before ([`ROOT_RECORD`]), then fail closed:
//!    the gateway must not start on empty stand-in directories. More than
//!    one: fail closed.
//! 2. Classify it. **Ours**: ext4 labelled [`LABEL`] with the marker file
//!    [`MARKER`]. **Blank**: no signature `blkid` knows and its first MiB
//!    all zero, or a format this root disk began ([`FORMAT_INTENT`]) and a
//!    power cut interrupted. Anything else is **foreign**: never formatted,
//!    never mounted writable, never written; the unit fails and the console
//!    names the cause (UPD-4).
//! 3. A blank volume is formatted (ext4, label, then the marker last).
//! 4. Mount it at [`MOUNT_POINT`] and bind each [`durable`] directory from
//!    it. A directory the volume does not have yet is first copied there
//!    from the root disk (`<name>.tmp`, then a rename), so a power cut
//!    anywhere converges on the next boot.
//!
//! What stays on the root disk: first boot's done marker and step record
//! ([`super::STATE_DIR`]), which say that *this* root disk was set up (a
//! rebuilt server's new root runs first boot again: host name, swap, root
//! growth, firewall), and the image's own files. First boot keeps what it
//! finds on the volume (the gateway token, Tailscale's identity) and
//! appends to the volume's first-boot record ([`RECORD`]).

use std::fs;
use std::io::{self, Read};

use super::fsutil::{self, ensure_dir, ensure_file};
use super::{Agent, Error, OPENCLAW_JSON, Scrubber};

/// The unit that runs [`Agent::state_volume`] on every boot.
pub const VOLUME_UNIT: &str = "openclaw-state-volume.service";
/// Where the volume is mounted.
pub const MOUNT_POINT: &str = "/var/lib/openclaw-state";
/// The ext4 label of a state volume.
pub const LABEL: &str = "openclaw-state";
/// The marker file at the volume's root, written last when it is formatted.
pub const MARKER: &str = ".openclaw-state-volume";
/// The marker's content.
pub const MARKER_TEXT: &str = "OpenClaw appliance state volume, format 1\n";
/// Where udev links Hetzner Volumes.
pub const BY_ID_DIR: &str = "/dev/disk/by-id";
/// The by-id name of a Hetzner Volume, before its id.
pub const BY_ID_PREFIX: &str = "scsi-0HC_Volume_";
/// On the root disk: the UUID of the volume this root disk uses. With it,
/// a missing volume fails closed instead of starting on empty directories.
pub const ROOT_RECORD: &str = "/var/lib/openclaw-appliance/state-volume";
/// On the root disk: the by-id path of a volume whose format began here.
pub const FORMAT_INTENT: &str = "/var/lib/openclaw-appliance/state-volume.formatting";
/// The image's own `openclaw.json`, saved before the volume's copy hides
/// it, so that first boot on a rebuilt server merges the new image's keys.
pub const IMAGE_CONFIG_COPY: &str = "/run/openclaw-state-volume/image-openclaw.json";
/// First boot's record on the volume: one line per first boot of a root
/// disk (image, time, where the gateway token came from). No secret.
pub const RECORD: &str = "/var/lib/openclaw-state/appliance/firstboot.log";
/// How each line of [`RECORD`] begins.
const RECORD_COMPLETED: &str = "first boot completed:";

/// The console line of a machine without a volume (UPD-3).
pub const NO_VOLUME_WARNING: &str = "no state volume attached: OpenClaw's sessions, credentials and workspace and Tailscale's identity live on the root disk, and rebuilding this server (`hcloud server rebuild`) will lose them; attach a blank Hetzner Volume to keep them (docs/hetzner.md)";

/// One directory that lives on the volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Durable {
    /// Its directory at the volume's root.
    pub name: &'static str,
    /// Where it is bound (an absolute image path).
    pub target: String,
}

/// Every durable directory of an image whose gateway user's home is `home`.
pub fn durable(home: &str) -> Vec<Durable> {
    let home = home.trim_end_matches('/');
    vec![
        Durable {
            name: "openclaw",
            target: format!("{home}/.openclaw"),
        },
        Durable {
            name: "workspace-sync",
            target: format!("{home}/.local/state/openclaw-appliance"),
        },
        Durable {
            name: "tailscale",
            target: "/var/lib/tailscale".into(),
        },
    ]
}

/// What the volume step found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeOutcome {
    /// No volume: state stays on the root disk (UPD-3).
    None,
    /// The volume is mounted and every durable directory bound from it.
    Mounted {
        /// The volume's by-id path.
        device: String,
        /// Whether it was blank and formatted now.
        formatted: bool,
    },
}

/// How `blkid -p` sees a device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Probe {
    /// `TYPE` (a filesystem) or `PTTYPE` (a partition table), if any.
    kind: Option<String>,
    label: Option<String>,
    uuid: Option<String>,
}

impl Probe {
    fn parse(export: &str) -> Probe {
        let mut p = Probe::default();
        for line in export.lines() {
            match line.split_once('=') {
                Some(("TYPE", v)) => p.kind = Some(v.to_string()),
                Some(("PTTYPE", v)) if p.kind.is_none() => {
                    p.kind = Some(format!("{v} partition table"))
                }
                Some(("LABEL", v)) => p.label = Some(v.to_string()),
                Some(("UUID", v)) => p.uuid = Some(v.to_string()),
                _ => {}
            }
        }
        p
    }

    fn is_ours(&self) -> bool {
        self.kind.as_deref() == Some("ext4") && self.label.as_deref() == Some(LABEL)
    }

    fn describe(&self) -> String {
        match (&self.kind, &self.label) {
            (Some(k), Some(l)) => format!("a {k} labelled `{l}`"),
            (Some(k), None) => format!("a {k}"),
            (None, _) => "data without a filesystem".into(),
        }
    }
}

/// Whether `mountinfo` (`/proc/self/mountinfo`) has `target` mounted from
/// the directory `root` of its filesystem (a bind of `<volume>/<name>` has
/// root `/<name>`). Being a mount point is not enough: systemd binds a
/// unit's state directories onto themselves.
pub fn is_bind_of(mountinfo: &str, target: &str, root: &str) -> bool {
    mountinfo.lines().any(|line| {
        let f: Vec<&str> = line.split(' ').collect();
        f.len() > 4 && unescape(f[4]) == target && unescape(f[3]) == root
    })
}

/// Whether `mountinfo` has anything mounted at `target`.
fn is_mount_point(mountinfo: &str, target: &str) -> bool {
    mountinfo.lines().any(|line| {
        let f: Vec<&str> = line.split(' ').collect();
        f.len() > 4 && unescape(f[4]) == target
    })
}

/// mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let mut out = String::new();
    let mut chars = field.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let code: String = chars.clone().take(3).collect();
            if code.len() == 3
                && let Ok(v) = u8::from_str_radix(&code, 8)
            {
                out.push(v as char);
                for _ in 0..3 {
                    chars.next();
                }
                continue;
            }
        }
        out.push(c);
    }
    out
}

impl Agent<'_> {
    /// Finds, checks, formats when blank, mounts the state volume and
    /// binds every durable directory from it (see the module docs).
    pub fn state_volume(&self) -> Result<VolumeOutcome, Error> {
        let scrub = Scrubber::default();
        // The root disk's own records (ROOT_RECORD, FORMAT_INTENT) live here.
        ensure_dir(
            &self.layout.path(super::STATE_DIR),
            0o755,
            self.root_owner(),
        )?;
        // The volume's by-id link is made by udev: wait for its queue.
        let _ = self.cmd("/usr/bin/udevadm", &["settle", "--timeout=30"]);
        let devices = self.volume_devices()?;
        let device = match devices.as_slice() {
            [] => return self.no_volume(),
            [one] => one.clone(),
            many => {
                return Err(Error::Invalid(format!(
                    "{} Hetzner Volumes are attached ({}): the appliance keeps its state on exactly one; \
                     detach the others and boot again (docs/hetzner.md)",
                    many.len(),
                    many.join(", ")
                )));
            }
        };
        let mountinfo = self.mountinfo();
        let mut formatted = false;
        // The filesystem's UUID: from the probe that found it ours, else
        // (just formatted, or mounted by an earlier run) probed again.
        let mut uuid = None;
        if !is_mount_point(&mountinfo, MOUNT_POINT) {
            let probe = self.probe(&device, &scrub)?;
            if probe.kind.is_none() {
                if self.blank(&device)? {
                    self.format(&device, &scrub)?;
                    formatted = true;
                } else {
                    return Err(foreign(&device, &probe));
                }
            } else if !probe.is_ours() {
                return Err(foreign(&device, &probe));
            } else {
                uuid = probe.uuid;
            }
            self.mount_volume(&device, formatted, &scrub)?;
        }
        let uuid = match uuid {
            Some(u) => u,
            None => self.probe(&device, &scrub)?.uuid.unwrap_or_default(),
        };
        if let Some(record) = self.root_volume_uuid()
            && !uuid.is_empty()
            && record != uuid
        {
            return Err(Error::Invalid(format!(
                "the state volume {device} (filesystem {uuid}) is not the one this root disk was \
                 set up with ({record}, {ROOT_RECORD}); the gateway stays down: attach that \
                 volume, or rebuild the server so first boot runs on the new one (docs/hetzner.md)"
            )));
        }
        ensure_file(
            &self.layout.path(ROOT_RECORD),
            0o644,
            self.root_owner(),
            format!("{uuid}\n").as_bytes(),
        )?;
        self.bind_durable(&scrub)?;
        self.log.info(&format!(
            "state volume {device} mounted at {MOUNT_POINT}{}: OpenClaw's state and workspace, \
             the workspace sync's history and Tailscale's state live on it and survive a rebuild",
            if formatted {
                " (blank: formatted now)"
            } else {
                ""
            }
        ));
        Ok(VolumeOutcome::Mounted { device, formatted })
    }

    /// The attached volumes' by-id paths (partitions left out), sorted.
    fn volume_devices(&self) -> Result<Vec<String>, Error> {
        let dir = self.layout.path(BY_ID_DIR);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(fsutil::io_err(&dir)(e)),
        };
        let mut found: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(BY_ID_PREFIX) && !n.contains("-part"))
            .map(|n| format!("{BY_ID_DIR}/{n}"))
            .collect();
        found.sort();
        Ok(found)
    }

    fn no_volume(&self) -> Result<VolumeOutcome, Error> {
        if let Some(uuid) = self.root_volume_uuid() {
            return Err(Error::Invalid(format!(
                "this machine keeps its state on a volume (filesystem {uuid}, {ROOT_RECORD}) and \
                 none is attached: the gateway and tailscaled stay down rather than start on \
                 empty directories; attach the volume and boot again (docs/hetzner.md)"
            )));
        }
        self.log.warn(NO_VOLUME_WARNING);
        Ok(VolumeOutcome::None)
    }

    fn root_volume_uuid(&self) -> Option<String> {
        fs::read_to_string(self.layout.path(ROOT_RECORD))
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
    }

    fn mountinfo(&self) -> String {
        fs::read_to_string(self.layout.path("/proc/self/mountinfo")).unwrap_or_default()
    }

    fn probe(&self, device: &str, scrub: &Scrubber) -> Result<Probe, Error> {
        let out = self.cmd("/usr/sbin/blkid", &["-p", "-o", "export", device])?;
        match out.code {
            Some(0) => Ok(Probe::parse(&out.stdout)),
            // blkid: "the specified token was not found", no signature.
            Some(2) => Ok(Probe::default()),
            _ => Err(super::steps::failed(
                "/usr/sbin/blkid",
                &["-p", "-o", "export", device],
                &out,
                scrub,
            )),
        }
    }

    /// Blank: its first MiB is all zero (a new Hetzner Volume), or a format
    /// this root disk began on it was interrupted.
    fn blank(&self, device: &str) -> Result<bool, Error> {
        let intent = fs::read_to_string(self.layout.path(FORMAT_INTENT)).unwrap_or_default();
        if intent.trim() == device {
            self.log.info(&format!(
                "{device}: a format begun by an earlier boot was interrupted; formatting again"
            ));
            return Ok(true);
        }
        let path = self.layout.path(device);
        let mut head = Vec::with_capacity(1 << 20);
        fs::File::open(&path)
            .and_then(|f| f.take(1 << 20).read_to_end(&mut head))
            .map_err(fsutil::io_err(&path))?;
        Ok(head.iter().all(|b| *b == 0))
    }

    fn format(&self, device: &str, scrub: &Scrubber) -> Result<(), Error> {
        self.log.info(&format!(
            "{device} is blank: formatting it as the state volume (ext4, label {LABEL})"
        ));
        ensure_file(
            &self.layout.path(FORMAT_INTENT),
            0o644,
            self.root_owner(),
            format!("{device}\n").as_bytes(),
        )?;
        self.cmd_ok(
            "/usr/sbin/mkfs.ext4",
            &["-q", "-F", "-L", LABEL, "-m", "0", device],
            scrub,
        )?;
        Ok(())
    }

    /// Mounts the volume; a just-formatted one gets its marker, and one
    /// without a marker is ours only if a format began here or it is empty.
    fn mount_volume(&self, device: &str, formatted: bool, scrub: &Scrubber) -> Result<(), Error> {
        let mount_point = self.layout.path(MOUNT_POINT);
        ensure_dir(&mount_point, 0o755, self.root_owner())?;
        self.cmd_ok(
            "/usr/bin/mount",
            &["-t", "ext4", "-o", "nodev,nosuid", device, MOUNT_POINT],
            scrub,
        )?;
        let marker = mount_point.join(MARKER);
        if !marker.exists() {
            let began_here = formatted
                || fs::read_to_string(self.layout.path(FORMAT_INTENT))
                    .is_ok_and(|t| t.trim() == device);
            let empty = fs::read_dir(&mount_point)
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .all(|e| e.file_name() == "lost+found")
                })
                .unwrap_or(false);
            if !began_here && !empty {
                let _ = self.cmd("/usr/bin/umount", &[MOUNT_POINT]);
                return Err(Error::Invalid(format!(
                    "{device} is ext4 labelled `{LABEL}` but has no {MARKER} and holds files: \
                     not a volume this appliance formatted; it is left untouched and the gateway \
                     stays down (docs/hetzner.md)"
                )));
            }
            ensure_file(&marker, 0o644, self.root_owner(), MARKER_TEXT.as_bytes())?;
        }
        fsutil::remove_file_if_exists(&self.layout.path(FORMAT_INTENT))?;
        ensure_dir(&mount_point.join("appliance"), 0o700, self.root_owner())?;
        Ok(())
    }

    /// Binds every durable directory from the volume, first moving there
    /// what the root disk has of one the volume lacks.
    fn bind_durable(&self, scrub: &Scrubber) -> Result<(), Error> {
        let user = self.user_info()?;
        let mountinfo = self.mountinfo();
        for d in durable(&user.home) {
            let on_volume = format!("{MOUNT_POINT}/{}", d.name);
            if is_bind_of(&mountinfo, &d.target, &format!("/{}", d.name)) {
                continue;
            }
            if d.name == "openclaw" {
                self.save_image_config(&user.home)?;
            }
            let src = self.layout.path(&on_volume);
            if !src.exists() {
                self.move_to_volume(&d, &on_volume, &user, scrub)?;
            }
            let target = self.layout.path(&d.target);
            if !target.is_dir() {
                let owner = if d.target.starts_with(&user.home) {
                    self.user_owner(&user)
                } else {
                    self.root_owner()
                };
                ensure_dir(&target, 0o700, owner)?;
            }
            self.cmd_ok("/usr/bin/mount", &["--bind", &on_volume, &d.target], scrub)?;
        }
        Ok(())
    }

    /// Copies the root disk's `d.target` to `<name>.tmp` on the volume,
    /// then renames it into place.
    fn move_to_volume(
        &self,
        d: &Durable,
        on_volume: &str,
        user: &super::UserInfo,
        scrub: &Scrubber,
    ) -> Result<(), Error> {
        let tmp = format!("{on_volume}.tmp");
        if self.layout.path(&tmp).exists() {
            self.cmd_ok("/usr/bin/rm", &["-rf", "--one-file-system", &tmp], scrub)?;
        }
        if self.layout.path(&d.target).is_dir() {
            self.cmd_ok("/usr/bin/cp", &["-a", &d.target, &tmp], scrub)?;
        } else {
            let owner = if d.target.starts_with(&user.home) {
                self.user_owner(user)
            } else {
                self.root_owner()
            };
            ensure_dir(&self.layout.path(&tmp), 0o700, owner)?;
        }
        let (from, to) = (self.layout.path(&tmp), self.layout.path(on_volume));
        fs::rename(&from, &to).map_err(fsutil::io_err(&to))?;
        fsutil::sync_dir(&self.layout.path(MOUNT_POINT))?;
        self.log.info(&format!(
            "{} moved onto the state volume ({on_volume})",
            d.target
        ));
        Ok(())
    }

    /// Saves the image's `openclaw.json` (still visible: the volume's copy
    /// is not bound yet) for first boot's merge.
    fn save_image_config(&self, home: &str) -> Result<(), Error> {
        let image_config = self
            .layout
            .path(&format!("{}/{OPENCLAW_JSON}", home.trim_end_matches('/')));
        let Ok(text) = fs::read(&image_config) else {
            return Ok(());
        };
        let copy = self.layout.path(IMAGE_CONFIG_COPY);
        if let Some(dir) = copy.parent() {
            ensure_dir(dir, 0o700, self.root_owner())?;
        }
        ensure_file(&copy, 0o600, self.root_owner(), &text)?;
        Ok(())
    }

    /// Whether a first boot completed on the mounted volume before (its
    /// record says so): the volume then carries an earlier root disk's
    /// state, the case of a rebuilt server.
    pub(super) fn volume_has_completed_first_boot(&self) -> bool {
        fs::read_to_string(self.layout.path(RECORD))
            .map(|t| t.lines().any(|l| l.starts_with(RECORD_COMPLETED)))
            .unwrap_or(false)
    }

    /// Appends one line to the volume's first-boot record, when a volume
    /// is mounted. No secret: where the token came from, not the token.
    pub(super) fn record_first_boot(&self, token_origin: &str) -> Result<(), Error> {
        let marker = self.layout.path(&format!("{MOUNT_POINT}/{MARKER}"));
        if !marker.exists() {
            return Ok(());
        }
        let path = self.layout.path(RECORD);
        let mut text = fs::read_to_string(&path).unwrap_or_default();
        let image = fs::read_to_string(self.layout.path(super::MANIFEST))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| {
                Some(format!(
                    "{} (OpenClaw {})",
                    v.get("name")?.as_str()?,
                    v.pointer("/openclaw/version")
                        .and_then(|x| x.as_str())
                        .unwrap_or("?")
                ))
            })
            .unwrap_or_else(|| "unknown image".into());
        let machine_id =
            fs::read_to_string(self.layout.path("/etc/machine-id")).unwrap_or_default();
        text.push_str(&format!(
            "{RECORD_COMPLETED} root disk machine-id {}, image {image}, gateway token {token_origin}\n",
            machine_id.trim()
        ));
        ensure_file(&path, 0o600, self.root_owner(), text.as_bytes())?;
        Ok(())
    }
}

/// `openclaw.json` on a rebuilt server: the state's config with every key
/// the new image's config sets taken from the image, leaf by leaf (objects
/// merge, anything else is replaced); keys only the state has stay.
pub(super) fn overlay(state: &mut serde_json::Value, image: &serde_json::Value) {
    use serde_json::Value;
    match (state, image) {
        (Value::Object(s), Value::Object(i)) => {
            for (k, v) in i {
                match s.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => overlay(existing, v),
                    _ => {
                        s.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (s, i) => *s = i.clone(),
    }
}

/// [`VOLUME_UNIT`]: a oneshot on every boot, before everything that
/// reads or writes durable state; those units require it, so a foreign or
/// missing volume keeps them down (fail closed).
pub fn unit_text() -> String {
    format!(
        "# UPD-1..4: durable state lives on the Hetzner Volume when one is attached.\n\
         # tailscaled, first boot, the gateway and the workspace sync require this unit:\n\
         # when it fails (a foreign volume, a missing one), they stay down.\n\
         [Unit]\n\
         Description=OpenClaw appliance state volume (UPD-1..4)\n\
         After=systemd-udev-trigger.service local-fs.target\n\
         Before=tailscaled.service openclaw-firstboot.service openclaw-gateway.service openclaw-workspace-sync.service ssh.service\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         RemainAfterExit=yes\n\
         ExecStart={binary} --state-volume\n\
         StandardOutput=journal+console\n\
         StandardError=journal+console\n\
         TimeoutStartSec=10min\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        binary = super::BINARY_PATH
    )
}

/// The drop-in that makes a unit require [`VOLUME_UNIT`] (for units the
/// image does not write itself, such as `tailscaled.service`).
pub fn requires_dropin() -> String {
    format!(
        "# UPD-1: this unit's state lives on the state volume when one is attached.\n\
         [Unit]\n\
         Requires={VOLUME_UNIT}\n\
         After={VOLUME_UNIT}\n"
    )
}

fn foreign(device: &str, probe: &Probe) -> Error {
    Error::Invalid(format!(
        "{device} holds {} — not an OpenClaw state volume: it is left untouched (not formatted, \
         not mounted); the gateway and tailscaled stay down. Attach a blank volume, or detach \
         this one to run without one (docs/hetzner.md)",
        probe.describe()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bind_is_known_by_its_root_not_by_being_a_mount_point() {
        let info = "\
36 25 8:17 / /var/lib/openclaw-state rw,nosuid,nodev - ext4 /dev/sdb rw\n\
37 25 8:17 /tailscale /var/lib/tailscale rw - ext4 /dev/sdb rw\n\
38 25 8:1 /var/lib/openclaw-appliance /var/lib/openclaw-appliance rw - ext4 /dev/sda1 rw\n\
39 25 8:17 /openclaw /home/open\\040claw/.openclaw rw - ext4 /dev/sdb rw\n";
        assert!(is_bind_of(info, "/var/lib/tailscale", "/tailscale"));
        assert!(!is_bind_of(
            info,
            "/var/lib/openclaw-appliance",
            "/appliance"
        ));
        assert!(is_bind_of(info, "/home/open claw/.openclaw", "/openclaw"));
        assert!(is_mount_point(info, MOUNT_POINT));
        assert!(!is_mount_point(info, "/var/lib"));
    }

    #[test]
    fn a_rebuilt_config_takes_the_images_keys_and_keeps_the_states_own() {
        let mut state = serde_json::json!({
            "gateway": {"auth": {"mode": "token", "token": "T"}, "port": 1},
            "channels": {"telegram": {"enabled": true}},
            "agents": {"defaults": {"model": {"primary": "old"}}},
            "meta": {"lastTouchedVersion": "x"}
        });
        let image = serde_json::json!({
            "gateway": {"auth": {"mode": "token"}, "port": 2, "trustedProxies": ["127.0.0.1"]},
            "agents": {"defaults": {"model": {"primary": "new"}}}
        });
        overlay(&mut state, &image);
        assert_eq!(
            state.pointer("/gateway/auth/token"),
            Some(&serde_json::json!("T"))
        );
        assert_eq!(state.pointer("/gateway/port"), Some(&serde_json::json!(2)));
        assert_eq!(
            state.pointer("/gateway/trustedProxies/0"),
            Some(&serde_json::json!("127.0.0.1"))
        );
        assert_eq!(
            state.pointer("/agents/defaults/model/primary"),
            Some(&serde_json::json!("new"))
        );
        assert_eq!(
            state.pointer("/channels/telegram/enabled"),
            Some(&serde_json::json!(true))
        );
        assert_eq!(
            state.pointer("/meta/lastTouchedVersion"),
            Some(&serde_json::json!("x"))
        );
    }

    #[test]
    fn blkid_export_says_ours_only_for_our_label_on_ext4() {
        let ours = Probe::parse("DEVNAME=/dev/sdb\nUUID=abc\nLABEL=openclaw-state\nTYPE=ext4\n");
        assert!(ours.is_ours());
        assert_eq!(ours.uuid.as_deref(), Some("abc"));
        let other = Probe::parse("LABEL=data\nTYPE=ext4\n");
        assert!(!other.is_ours());
        assert_eq!(other.describe(), "a ext4 labelled `data`");
        let table = Probe::parse("PTUUID=x\nPTTYPE=gpt\n");
        assert_eq!(table.describe(), "a gpt partition table");
        let xfs = Probe::parse("LABEL=openclaw-state\nTYPE=xfs\n");
        assert!(!xfs.is_ours());
    }

    mod agent {
        use std::fs;
        use std::io;
        use std::path::{Path, PathBuf};
        use std::sync::Mutex;

        use super::super::*;
        use crate::firstboot::tests::MemLog;
        use crate::firstboot::{CmdOutput, FetchPolicy, Layout, Runner};

        const DEVICE: &str = "/dev/disk/by-id/scsi-0HC_Volume_7";
        const OURS: &[u8] = b"FAKE-EXT4 openclaw-state";

        /// Imitates blkid, mkfs.ext4, mount, cp and rm on a fake root: a
        /// "device" is a file whose first bytes say what it holds; mounts
        /// are lines in the fake root's mountinfo (a reboot removes them).
        struct Fake {
            root: PathBuf,
            calls: Mutex<Vec<String>>,
            /// Make mkfs fail after writing half a filesystem (a power cut).
            mkfs_cut: Mutex<bool>,
        }

        fn out(code: i32, stdout: &str) -> io::Result<CmdOutput> {
            Ok(CmdOutput {
                code: Some(code),
                stdout: stdout.into(),
                stderr: String::new(),
            })
        }

        impl Fake {
            fn mountinfo(&self) -> PathBuf {
                self.root.join("proc/self/mountinfo")
            }
            fn add_mount(&self, root: &str, target: &str) -> io::Result<()> {
                fs::create_dir_all(self.root.join("proc/self"))?;
                let mut t = fs::read_to_string(self.mountinfo()).unwrap_or_default();
                t.push_str(&format!(
                    "40 1 8:16 {root} {target} rw - ext4 /dev/sdb rw\n"
                ));
                fs::write(self.mountinfo(), t)
            }
            fn calls(&self) -> Vec<String> {
                self.calls.lock().map(|c| c.clone()).unwrap_or_default()
            }
        }

        impl Runner for Fake {
            fn run(&self, program: &str, args: &[&str]) -> io::Result<CmdOutput> {
                if let Ok(mut c) = self.calls.lock() {
                    c.push(format!("{program} {}", args.join(" ")));
                }
                let at = |p: &str| self.root.join(p.trim_start_matches('/'));
                match (program, args) {
                    ("/usr/bin/udevadm", _) => out(0, ""),
                    ("/usr/sbin/blkid", [.., dev]) => {
                        let head = fs::read(at(dev))?;
                        if head.starts_with(OURS) {
                            out(0, "UUID=vol-uuid\nLABEL=openclaw-state\nTYPE=ext4\n")
                        } else if head.starts_with(b"XFSB") {
                            out(0, "UUID=other\nTYPE=xfs\n")
                        } else {
                            out(2, "")
                        }
                    }
                    ("/usr/sbin/mkfs.ext4", [.., dev]) => {
                        let mut data = fs::read(at(dev))?;
                        if std::mem::take(
                            &mut *self.mkfs_cut.lock().map_err(|_| io::Error::other("lock"))?,
                        ) {
                            data[4096..8192].fill(0xAA);
                            fs::write(at(dev), data)?;
                            return out(1, "power cut");
                        }
                        data[..OURS.len()].copy_from_slice(OURS);
                        fs::write(at(dev), data)?;
                        out(0, "")
                    }
                    ("/usr/bin/mount", ["--bind", src, target]) => {
                        let name = src.trim_start_matches(MOUNT_POINT);
                        self.add_mount(name, target)?;
                        out(0, "")
                    }
                    ("/usr/bin/mount", [.., _dev, target]) => {
                        self.add_mount("/", target)?;
                        out(0, "")
                    }
                    ("/usr/bin/umount", _) => out(0, ""),
                    ("/usr/bin/cp", ["-a", from, to]) => {
                        let st = std::process::Command::new("cp")
                            .args(["-a"])
                            .arg(at(from))
                            .arg(at(to))
                            .status()?;
                        out(if st.success() { 0 } else { 1 }, "")
                    }
                    ("/usr/bin/rm", [.., path]) => {
                        fs::remove_dir_all(at(path))?;
                        out(0, "")
                    }
                    _ => out(127, "unexpected program"),
                }
            }
        }

        fn put(root: &Path, rel: &str, data: &[u8]) {
            let p = root.join(rel);
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            fs::write(p, data).expect("write");
        }

        /// A root with the gateway user's config, Tailscale's state and,
        /// when `volume` is given, a volume holding those bytes.
        fn root(volume: Option<&[u8]>) -> tempfile::TempDir {
            let dir = tempfile::tempdir().expect("tempdir");
            let r = dir.path();
            put(
                r,
                "etc/passwd",
                b"openclaw:x:1000:1000::/home/openclaw:/bin/bash\n",
            );
            put(
                r,
                "home/openclaw/.openclaw/openclaw.json",
                b"{\"gateway\": {}}\n",
            );
            put(r, "var/lib/tailscale/tailscaled.state", b"{}");
            put(r, "usr/share/openclaw-appliance/manifest.json", b"{}");
            if let Some(bytes) = volume {
                let mut data = bytes.to_vec();
                data.resize(2 << 20, 0);
                put(r, DEVICE.trim_start_matches('/'), &data);
            }
            dir
        }

        fn run(root: &Path, fake: &Fake) -> (Result<VolumeOutcome, Error>, String) {
            let log = MemLog::default();
            let agent = Agent {
                layout: Layout {
                    root: root.to_path_buf(),
                    user: "openclaw".into(),
                    set_owner: false,
                    urandom: root.join("dev/urandom"),
                },
                credentials_dir: None,
                metadata_url: None,
                fetch: FetchPolicy::default(),
                runner: fake,
                log: &log,
            };
            let r = agent.state_volume();
            (r, log.all())
        }

        fn fake(root: &Path) -> Fake {
            Fake {
                root: root.to_path_buf(),
                calls: Mutex::new(Vec::new()),
                mkfs_cut: Mutex::new(false),
            }
        }

        #[test]
        fn no_volume_warns_that_a_rebuild_loses_state() {
            let dir = root(None);
            let (r, log) = run(dir.path(), &fake(dir.path()));
            assert_eq!(r.expect("no volume is fine"), VolumeOutcome::None);
            assert!(log.contains(NO_VOLUME_WARNING), "{log}");
        }

        #[test]
        fn a_blank_volume_is_formatted_and_gets_every_durable_directory() {
            let dir = root(Some(&[]));
            let r = dir.path();
            let f = fake(r);
            let (out, log) = run(r, &f);
            assert!(
                matches!(
                    out,
                    Ok(VolumeOutcome::Mounted {
                        formatted: true,
                        ..
                    })
                ),
                "{out:?} {log}"
            );
            let vol = r.join(MOUNT_POINT.trim_start_matches('/'));
            assert_eq!(
                fs::read_to_string(vol.join(MARKER)).expect("marker"),
                MARKER_TEXT
            );
            assert!(vol.join("openclaw/openclaw.json").is_file());
            assert!(vol.join("tailscale/tailscaled.state").is_file());
            assert!(vol.join("workspace-sync").is_dir());
            assert!(vol.join("appliance").is_dir());
            assert!(!r.join(FORMAT_INTENT.trim_start_matches('/')).exists());
            assert_eq!(
                fs::read_to_string(r.join(ROOT_RECORD.trim_start_matches('/'))).expect("record"),
                "vol-uuid\n"
            );
            let info = fs::read_to_string(f.mountinfo()).expect("mountinfo");
            for d in durable("/home/openclaw") {
                assert!(
                    is_bind_of(&info, &d.target, &format!("/{}", d.name)),
                    "{} not bound: {info}",
                    d.target
                );
            }
            // The image's config is kept for first boot's merge.
            assert!(r.join(IMAGE_CONFIG_COPY.trim_start_matches('/')).is_file());
        }

        #[test]
        fn an_attached_volume_of_ours_is_kept_not_formatted_and_binds_are_not_doubled() {
            let dir = root(Some(&[]));
            let r = dir.path();
            let f = fake(r);
            run(r, &f).0.expect("first");
            put(
                r,
                "var/lib/openclaw-state/openclaw/agents/main/session",
                b"kept",
            );
            // Same boot again: everything already bound, nothing redone.
            let (again, _) = run(r, &f);
            assert!(matches!(
                again,
                Ok(VolumeOutcome::Mounted {
                    formatted: false,
                    ..
                })
            ));
            // A reboot: mounts gone, the volume kept.
            fs::remove_dir_all(r.join("proc")).expect("reboot");
            let f2 = fake(r);
            let (boot2, log) = run(r, &f2);
            assert!(
                matches!(
                    boot2,
                    Ok(VolumeOutcome::Mounted {
                        formatted: false,
                        ..
                    })
                ),
                "{log}"
            );
            assert!(
                !f2.calls().iter().any(|c| c.contains("mkfs")),
                "{:?}",
                f2.calls()
            );
            assert!(
                !f2.calls().iter().any(|c| c.starts_with("/usr/bin/cp")),
                "{:?}",
                f2.calls()
            );
            assert_eq!(
                fs::read(r.join("var/lib/openclaw-state/openclaw/agents/main/session"))
                    .expect("kept"),
                b"kept"
            );
            let binds = f.calls().iter().filter(|c| c.contains("--bind")).count();
            assert_eq!(binds, 3, "{:?}", f.calls());
        }

        #[test]
        fn a_foreign_volume_is_never_formatted_mounted_or_written() {
            for (what, bytes) in [
                ("xfs", b"XFSB-somebody-else".as_slice()),
                ("raw data", b"\x01\x02data".as_slice()),
            ] {
                let dir = root(Some(bytes));
                let r = dir.path();
                let before = fs::read(r.join(DEVICE.trim_start_matches('/'))).expect("read");
                let f = fake(r);
                let (out, _) = run(r, &f);
                let e = out.expect_err(what).to_string();
                assert!(
                    e.contains("not an OpenClaw state volume") && e.contains("left untouched"),
                    "{what}: {e}"
                );
                assert_eq!(
                    fs::read(r.join(DEVICE.trim_start_matches('/'))).expect("read"),
                    before,
                    "{what}"
                );
                let calls = f.calls();
                assert!(
                    !calls
                        .iter()
                        .any(|c| c.contains("mkfs") || c.contains("/usr/bin/mount")),
                    "{what}: {calls:?}"
                );
                assert!(!r.join(ROOT_RECORD.trim_start_matches('/')).exists());
            }
        }

        #[test]
        fn a_volume_this_root_used_must_be_there() {
            let dir = root(Some(&[]));
            let r = dir.path();
            run(r, &fake(r)).0.expect("first");
            fs::remove_file(r.join(DEVICE.trim_start_matches('/'))).expect("detach");
            fs::remove_dir_all(r.join("proc")).expect("reboot");
            let e = run(r, &fake(r)).0.expect_err("missing volume").to_string();
            assert!(
                e.contains("none is attached") && e.contains("stay down"),
                "{e}"
            );
        }

        #[test]
        fn a_power_cut_while_formatting_or_moving_converges() {
            // Cut in mkfs: the device is neither blank nor ours, but this
            // root disk began the format: it is formatted again.
            let dir = root(Some(&[]));
            let r = dir.path();
            let f = fake(r);
            *f.mkfs_cut.lock().expect("lock") = true;
            assert!(run(r, &f).0.is_err());
            assert!(r.join(FORMAT_INTENT.trim_start_matches('/')).exists());
            fs::remove_dir_all(r.join("proc")).ok();
            let (out, log) = run(r, &fake(r));
            assert!(
                matches!(
                    out,
                    Ok(VolumeOutcome::Mounted {
                        formatted: true,
                        ..
                    })
                ),
                "{out:?} {log}"
            );

            // Cut while copying: a half-made `.tmp` is removed and redone.
            let dir = root(Some(&[]));
            let r = dir.path();
            put(r, "var/lib/openclaw-state/openclaw.tmp/half", b"x");
            let f = fake(r);
            run(r, &f).0.expect("converges");
            assert!(!r.join("var/lib/openclaw-state/openclaw.tmp").exists());
            assert!(!r.join("var/lib/openclaw-state/openclaw/half").exists());
            assert!(
                r.join("var/lib/openclaw-state/openclaw/openclaw.json")
                    .is_file()
            );
        }
    }
}
