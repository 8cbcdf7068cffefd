//! Unit tests on small synthetic rootfs tars.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tar::{Archive, Builder, EntryType, Header};

use super::archive::{config_json, parse_reference};
use super::*;

const EPOCH: u64 = 1_747_699_200; // 2025-05-20T00:00:00Z

fn config() -> ImageConfig {
    ImageConfig {
        reference: "openclaw-sandbox-custom:latest".into(),
        user: "1000".into(),
        working_dir: "/home/node".into(),
        env: vec!["PATH=/usr/local/bin:/usr/bin:/bin".into()],
        cmd: vec!["sleep".into(), "infinity".into()],
        created_epoch: EPOCH,
        labels: BTreeMap::from([("org.opencontainers.image.title".into(), "sandbox".into())]),
    }
}

/// Builds a rootfs tar the way mmdebstrap lays it out (`./` prefixes,
/// owner names, device nodes first).
struct Input(Builder<Vec<u8>>);

impl Input {
    fn new() -> Self {
        Input(Builder::new(Vec::new()))
    }

    fn header(ty: EntryType, mode: u32, mtime: u64) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(ty);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_username("root").unwrap();
        h.set_groupname("root").unwrap();
        h.set_mtime(mtime);
        h.set_size(0);
        h
    }

    fn dir(mut self, path: &str, mode: u32) -> Self {
        let mut h = Self::header(EntryType::Directory, mode, EPOCH + 500);
        self.0.append_data(&mut h, path, std::io::empty()).unwrap();
        self
    }

    fn file(mut self, path: &str, mode: u32, data: &[u8]) -> Self {
        let mut h = Self::header(EntryType::Regular, mode, 1_000);
        h.set_size(data.len() as u64);
        self.0.append_data(&mut h, path, data).unwrap();
        self
    }

    fn owned_file(mut self, path: &str, mode: u32, gid: u64, data: &[u8]) -> Self {
        let mut h = Self::header(EntryType::Regular, mode, EPOCH + 99);
        h.set_gid(gid);
        h.set_size(data.len() as u64);
        self.0.append_data(&mut h, path, data).unwrap();
        self
    }

    fn link(mut self, ty: EntryType, path: &str, target: &str) -> Self {
        let mut h = Self::header(ty, 0o777, 1_000);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }

    /// A symlink whose target is stored byte for byte.
    fn literal_symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::header(EntryType::Symlink, 0o777, 1_000);
        h.set_link_name_literal(target).unwrap();
        self.0.append_data(&mut h, path, std::io::empty()).unwrap();
        self
    }

    fn device(mut self, ty: EntryType, path: &str) -> Self {
        let mut h = Self::header(ty, 0o666, 1_000);
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        self.0.append_data(&mut h, path, std::io::empty()).unwrap();
        self
    }

    fn xattrs(mut self, records: &[(&str, &[u8])]) -> Self {
        self.0
            .append_pax_extensions(records.iter().copied())
            .unwrap();
        self
    }

    fn write(self, dir: &Path) -> PathBuf {
        let path = dir.join("root.tar");
        std::fs::write(&path, self.0.into_inner().unwrap()).unwrap();
        path
    }
}

fn typical() -> Input {
    Input::new()
        .dir("./dev/", 0o755)
        .device(EntryType::Char, "./dev/null")
        .link(EntryType::Symlink, "./dev/fd", "/proc/self/fd")
        .dir("./dev/pts/", 0o755)
        .dir("./", 0o755)
        .link(EntryType::Symlink, "./bin", "usr/bin")
        .dir("./usr/", 0o755)
        .dir("./usr/bin/", 0o755)
        .file("./usr/bin/perl", 0o755, b"perl binary")
        .link(EntryType::Link, "./usr/bin/perl5.40.1", "./usr/bin/perl")
        .file("./usr/bin/sudo", 0o4755, b"sudo")
        .owned_file("./usr/bin/chage", 0o2755, 42, b"chage")
        .file("./usr/bin/both", 0o6755, b"both")
        .dir("./var/", 0o755)
        .dir("./var/mail/", 0o2775)
        .dir("./tmp/", 0o1777)
        .dir("./proc/", 0o555)
        .file("./proc/cpuinfo", 0o444, b"")
        .dir("./sys/", 0o555)
        .device(EntryType::Block, "./var/sda")
        .file("./etc/a", 0o644, b"a")
}

/// Reads the layer out of an archive: (name, type, mode, uid, gid, mtime,
/// link, data, pax keys) per entry.
type Member = (
    String,
    EntryType,
    u32,
    u64,
    u64,
    u64,
    String,
    Vec<u8>,
    Vec<String>,
);

fn layer_members(archive: &Path) -> Vec<Member> {
    let audit = audit_layer(archive).unwrap();
    let layer_path = format!(
        "blobs/sha256/{}",
        audit.layer_digests[0].trim_start_matches("sha256:")
    );
    let mut outer = Archive::new(std::fs::File::open(archive).unwrap());
    for entry in outer.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some(layer_path.as_str()) {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            let mut inner = Archive::new(&bytes[..]);
            let mut out = Vec::new();
            for e in inner.entries().unwrap() {
                let mut e = e.unwrap();
                let pax: Vec<String> = e
                    .pax_extensions()
                    .unwrap()
                    .map(|p| p.map(|r| r.unwrap().key().unwrap().to_owned()).collect())
                    .unwrap_or_default();
                let h = e.header().clone();
                let link = e
                    .link_name_bytes()
                    .map(|l| String::from_utf8_lossy(&l).into_owned())
                    .unwrap_or_default();
                let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
                assert_eq!(h.username_bytes(), Some(&b""[..]), "{name}");
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                out.push((
                    name,
                    h.entry_type(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    h.mtime().unwrap(),
                    link,
                    data,
                    pax,
                ));
            }
            return out;
        }
    }
    panic!("no layer {layer_path} in {}", archive.display());
}

fn names(members: &[Member]) -> Vec<&str> {
    members.iter().map(|m| m.0.as_str()).collect()
}

#[test]
fn layer_is_sorted_and_special_trees_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let root = typical().write(tmp.path());
    let out = tmp.path().join("out/image.tar");
    let info = write_image(&root, &config(), &out).unwrap();
    let members = layer_members(&out);
    assert_eq!(
        names(&members),
        [
            "bin",
            "dev/",
            "etc/a",
            "proc/",
            "sys/",
            "tmp/",
            "usr/",
            "usr/bin/",
            "usr/bin/both",
            "usr/bin/chage",
            "usr/bin/perl",
            "usr/bin/perl5.40.1",
            "usr/bin/sudo",
            "var/",
            "var/mail/",
        ]
    );
    assert_eq!(info.stats.entries_read, 21);
    assert_eq!(info.stats.entries_written, 15);
    assert_eq!(info.stats.devices_dropped, 2);
    // ./, dev/fd, dev/pts/, proc/cpuinfo
    assert_eq!(info.stats.special_dropped, 4);
    let bin = &members[0];
    assert_eq!((bin.1, bin.6.as_str()), (EntryType::Symlink, "usr/bin"));
}

#[test]
fn setid_bits_are_cleared_and_the_rest_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let root = typical().write(tmp.path());
    let out = tmp.path().join("image.tar");
    let info = write_image(&root, &config(), &out).unwrap();
    let members = layer_members(&out);
    let mode = |n: &str| members.iter().find(|m| m.0 == n).unwrap().2;
    assert_eq!(mode("usr/bin/sudo"), 0o755);
    assert_eq!(mode("usr/bin/chage"), 0o755);
    assert_eq!(mode("usr/bin/both"), 0o755);
    assert_eq!(mode("var/mail/"), 0o775);
    assert_eq!(mode("tmp/"), 0o1777, "sticky bit stays");
    assert!(members.iter().all(|m| m.2 & 0o6000 == 0));
    assert_eq!(info.stats.setid_cleared, 4);
    let chage = members.iter().find(|m| m.0 == "usr/bin/chage").unwrap();
    assert_eq!((chage.3, chage.4), (0, 42), "numeric owner kept");

    let audit = audit_layer(&out).unwrap();
    assert_eq!(audit.setid_entries, 0);
    assert!(audit.problems.is_empty(), "{:?}", audit.problems);
}

#[test]
fn mtimes_are_clamped_to_the_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let root = typical().write(tmp.path());
    let out = tmp.path().join("image.tar");
    write_image(&root, &config(), &out).unwrap();
    for m in layer_members(&out) {
        let expected = if m.1 == EntryType::Directory || m.0 == "usr/bin/chage" {
            EPOCH
        } else {
            1_000
        };
        assert_eq!(m.5, expected, "{}", m.0);
    }
}

#[test]
fn hardlinks_point_at_the_first_member_in_sorted_order() {
    let tmp = tempfile::tempdir().unwrap();
    // The data entry sorts after both links to it; one link goes through
    // another link.
    let root = Input::new()
        .dir("./z/", 0o755)
        .file("./z/data", 0o4755, b"payload")
        .dir("./a/", 0o755)
        .link(EntryType::Link, "./a/link", "./z/data")
        .link(EntryType::Link, "./m/chained", "./a/link")
        .write(tmp.path());
    let out = tmp.path().join("image.tar");
    let info = write_image(&root, &config(), &out).unwrap();
    let members = layer_members(&out);
    assert_eq!(
        names(&members),
        ["a/", "a/link", "m/chained", "z/", "z/data"]
    );
    let get = |n: &str| members.iter().find(|m| m.0 == n).unwrap();
    let first = get("a/link");
    assert_eq!(first.1, EntryType::Regular);
    assert_eq!(first.7, b"payload");
    assert_eq!(first.2, 0o755, "the data entry's mode, setuid cleared");
    for name in ["m/chained", "z/data"] {
        let m = get(name);
        assert_eq!((m.1, m.6.as_str()), (EntryType::Link, "a/link"), "{name}");
        assert!(m.7.is_empty());
    }
    assert_eq!(info.stats.hardlinks, 2);
    let audit = audit_layer(&out).unwrap();
    assert_eq!(audit.hardlinks, 2);
    assert!(audit.problems.is_empty(), "{:?}", audit.problems);
}

#[test]
fn hardlink_to_a_dropped_or_missing_entry_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let root = Input::new()
        .file("./a", 0o644, b"x")
        .link(EntryType::Link, "./b", "./nowhere")
        .write(tmp.path());
    let err = write_image(&root, &config(), &tmp.path().join("i.tar")).unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("`b` points at `nowhere`"), "{text}");
    assert!(text.contains("root.tar"), "{text}");
    assert!(!tmp.path().join("i.tar").exists());
}

#[test]
fn duplicate_paths_are_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let root = Input::new()
        .file("./a", 0o644, b"x")
        .file("a", 0o644, b"y")
        .write(tmp.path());
    let err = write_image(&root, &config(), &tmp.path().join("i.tar")).unwrap_err();
    assert!(format!("{err:#}").contains("`a` appears twice"), "{err:#}");
}

#[test]
fn capabilities_dropped_other_xattrs_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let root = Input::new()
        .xattrs(&[
            ("SCHILY.xattr.user.note", b"hi"),
            ("SCHILY.xattr.security.capability", b"\x01\x00\x00\x02"),
            ("atime", b"1234.5"),
        ])
        .file("./usr/bin/ping", 0o755, b"ping")
        .write(tmp.path());
    let out = tmp.path().join("image.tar");
    let info = write_image(&root, &config(), &out).unwrap();
    assert_eq!(info.stats.capabilities_dropped, 1);
    let members = layer_members(&out);
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].8, ["SCHILY.xattr.user.note"]);
    let audit = audit_layer(&out).unwrap();
    assert_eq!(audit.capability_xattrs, 0);
    assert!(audit.problems.is_empty(), "{:?}", audit.problems);
}

#[test]
fn long_names_and_link_targets_survive() {
    let tmp = tempfile::tempdir().unwrap();
    let long_dir = format!("./usr/share/{}", "d".repeat(120));
    let long_file = format!("{long_dir}/{}", "f".repeat(90));
    let long_target = format!("../../{}", "t".repeat(150));
    let root = Input::new()
        .dir(&format!("{long_dir}/"), 0o755)
        .file(&long_file, 0o644, b"data")
        .link(EntryType::Symlink, "./usr/s", &long_target)
        .literal_symlink("./usr/odd", "a//b/./c")
        .write(tmp.path());
    let out = tmp.path().join("image.tar");
    write_image(&root, &config(), &out).unwrap();
    let members = layer_members(&out);
    let get = |n: &str| members.iter().find(|m| m.0 == n).unwrap();
    assert_eq!(get(&long_file[2..]).7, b"data");
    assert_eq!(get(&format!("{}/", &long_dir[2..])).1, EntryType::Directory);
    assert_eq!(get("usr/s").6, long_target);
    assert_eq!(get("usr/odd").6, "a//b/./c", "short targets are verbatim");
}

#[test]
fn two_writes_give_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = typical().write(tmp.path());
    let a = tmp.path().join("a/image.tar");
    let b = tmp.path().join("b/other-name.tar");
    let info_a = write_image(&root, &config(), &a).unwrap();
    let info_b = write_image(&root, &config(), &b).unwrap();
    assert_eq!(info_a, info_b);
    let bytes_a = std::fs::read(&a).unwrap();
    assert_eq!(bytes_a, std::fs::read(&b).unwrap());
    assert_eq!(info_a.size, bytes_a.len() as u64);
    // Only the final file is left: no temporaries.
    assert_eq!(std::fs::read_dir(tmp.path().join("a")).unwrap().count(), 1);

    // The outer tar itself: sorted, owned by 0, the epoch as mtime.
    let mut outer = Archive::new(&bytes_a[..]);
    let mut paths = Vec::new();
    for e in outer.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        assert_eq!(
            (h.uid().unwrap(), h.gid().unwrap(), h.mtime().unwrap()),
            (0, 0, EPOCH)
        );
        paths.push(e.path().unwrap().to_string_lossy().into_owned());
    }
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);
    for required in ["oci-layout", "index.json", "manifest.json", "blobs/sha256/"] {
        assert!(
            paths.iter().any(|p| p == required),
            "{required} in {paths:?}"
        );
    }

    // A different config changes the ID but not the layer.
    let mut other = config();
    other.user = "0".into();
    let info_c = write_image(&root, &other, &tmp.path().join("c.tar")).unwrap();
    assert_eq!(info_c.layer_diff_id, info_a.layer_diff_id);
    assert_ne!(info_c.image_id, info_a.image_id);
}

#[test]
fn image_id_is_the_sha256_of_the_config_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = typical().write(tmp.path());
    let out = tmp.path().join("image.tar");
    let info = write_image(&root, &config(), &out).unwrap();
    let expected = config_json(&config(), &info.layer_diff_id).unwrap();
    let id = format!("sha256:{}", hex::encode(Sha256::digest(&expected)));
    assert_eq!(info.image_id, id);
    assert_eq!(info.config_digest, id);

    let audit = audit_layer(&out).unwrap();
    assert_eq!(audit.image_id, id);
    assert_eq!(audit.user, "1000");
    assert_eq!(audit.repo_tags, ["openclaw-sandbox-custom:latest"]);
    assert_eq!(audit.diff_ids, std::slice::from_ref(&info.layer_diff_id));
    assert_eq!(
        audit.layer_digests,
        std::slice::from_ref(&info.layer_diff_id)
    );
    assert_eq!(
        audit.manifest_digest.as_deref(),
        Some(info.manifest_digest.as_str())
    );
    assert_eq!(audit.entries, 15);
    assert!(audit.problems.is_empty(), "{:?}", audit.problems);

    let v: serde_json::Value = serde_json::from_slice(&expected).unwrap();
    assert_eq!(v["architecture"], "amd64");
    assert_eq!(v["os"], "linux");
    assert_eq!(v["created"], "2025-05-20T00:00:00Z");
    assert_eq!(v["config"]["Cmd"], serde_json::json!(["sleep", "infinity"]));
    assert_eq!(v["config"]["WorkingDir"], "/home/node");
    assert_eq!(v["rootfs"]["type"], "layers");
    assert_eq!(v["history"].as_array().unwrap().len(), 1);
}

#[test]
fn audit_reports_setid_bits_in_a_foreign_archive() {
    // A docker-save-like archive whose layer kept a setuid file.
    let tmp = tempfile::tempdir().unwrap();
    let mut layer = Builder::new(Vec::new());
    let mut h = Input::header(EntryType::Regular, 0o4755, 0);
    h.set_size(1);
    layer
        .append_data(&mut h, "usr/bin/sudo", &b"x"[..])
        .unwrap();
    let layer = layer.into_inner().unwrap();
    let diff_id = format!("sha256:{}", hex::encode(Sha256::digest(&layer)));
    let cfg = config_json(&config(), &diff_id).unwrap();
    let manifest = serde_json::json!([{
        "Config": "cfg.json", "RepoTags": ["x:1"], "Layers": ["l/layer.tar"]
    }]);
    let mut outer = Builder::new(Vec::new());
    for (name, data) in [
        ("cfg.json", cfg.clone()),
        ("l/layer.tar", layer),
        ("manifest.json", serde_json::to_vec(&manifest).unwrap()),
    ] {
        let mut h = Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        outer.append_data(&mut h, name, &data[..]).unwrap();
    }
    let path = tmp.path().join("foreign.tar");
    std::fs::write(&path, outer.into_inner().unwrap()).unwrap();
    let audit = audit_layer(&path).unwrap();
    assert_eq!(audit.setid_entries, 1);
    assert_eq!(audit.setid_paths, ["usr/bin/sudo (4755)"]);
    assert_eq!(audit.problems.len(), 2, "{:?}", audit.problems);
    assert!(audit.problems[0].contains("carries an owner name"));
    assert!(audit.problems[1].starts_with("AGT-3"));
}

#[test]
fn references_are_normalized() {
    let r = parse_reference("openclaw-sandbox-custom:latest").unwrap();
    assert_eq!(r.familiar, "openclaw-sandbox-custom:latest");
    assert_eq!(r.full, "docker.io/library/openclaw-sandbox-custom:latest");
    assert_eq!(r.tag, "latest");
    let r = parse_reference("openclaw/sandbox").unwrap();
    assert_eq!(r.full, "docker.io/openclaw/sandbox:latest");
    let r = parse_reference("localhost:5000/a/b:v1.2").unwrap();
    assert_eq!(r.familiar, "localhost:5000/a/b:v1.2");
    assert_eq!(r.full, "localhost:5000/a/b:v1.2");
    assert!(parse_reference("Upper:latest").is_err());
    assert!(parse_reference("a@sha256:00").is_err());
    assert!(parse_reference("a:").is_err());
}

#[test]
fn rfc3339_of_known_epochs() {
    assert_eq!(rfc3339(0).unwrap(), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(EPOCH).unwrap(), "2025-05-20T00:00:00Z");
    assert_eq!(
        rfc3339(951_782_400 + 3_661).unwrap(),
        "2000-02-29T01:01:01Z"
    );
    assert_eq!(rfc3339(4_107_542_399).unwrap(), "2100-02-28T23:59:59Z");
    assert!(rfc3339(u64::MAX).is_err());
}

// --- Docker's image store (`store.rs`) ---

/// A rootfs with a hard link, a symlink, directories and a file owned by
/// uid 1000, written into an archive and from it into a store.
fn store_of(dir: &Path, ids: &IdMap) -> (ImageInfo, StoreInfo, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let root = Input::new()
        .dir("./", 0o755)
        .dir("./usr/", 0o755)
        .dir("./usr/bin/", 0o755)
        .file("./usr/bin/perl", 0o755, b"perl binary")
        .link(EntryType::Link, "./usr/bin/perl5.40.1", "./usr/bin/perl")
        .link(EntryType::Symlink, "./bin", "usr/bin")
        .dir("./home/", 0o755)
        .dir("./home/node/", 0o750)
        .write(dir);
    // `Input` owns everything by uid 0: append a file of uid 1000.
    let mut extra = Builder::new(Vec::new());
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Regular);
    h.set_mode(0o644);
    h.set_uid(1000);
    h.set_gid(1000);
    h.set_mtime(EPOCH + 7);
    h.set_size(5);
    extra
        .append_data(&mut h, "./home/node/.bashrc", &b"alias"[..])
        .unwrap();
    let mut bytes = std::fs::read(&root).unwrap();
    // Drop the two end-of-archive blocks, append the extra member.
    bytes.truncate(bytes.len() - 1024);
    bytes.extend(extra.into_inner().unwrap());
    std::fs::write(&root, bytes).unwrap();

    let archive = dir.join("image.tar");
    let image = write_image(&root, &config(), &archive).unwrap();
    let out = dir.join("out/store.tar");
    let store = write_store(
        &archive,
        &StoreOptions {
            root: "var/lib/docker",
            ids,
            epoch: EPOCH,
        },
        &out,
    )
    .unwrap();
    (image, store, out)
}

fn member_bytes(tar_path: &Path, name: &str) -> Vec<u8> {
    let mut archive = Archive::new(std::fs::File::open(tar_path).unwrap());
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path_bytes().as_ref() == name.as_bytes() {
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            return data;
        }
    }
    panic!("no {name} in {}", tar_path.display());
}

#[test]
fn store_holds_the_image_as_docker_lays_it_out() {
    let tmp = tempfile::tempdir().unwrap();
    let (image, store, out) = store_of(tmp.path(), &IdMap::identity());
    let id_hex = image.image_id.trim_start_matches("sha256:");
    let chain_hex = image.layer_diff_id.trim_start_matches("sha256:");
    assert_eq!(store.image_id, image.image_id);
    assert_eq!(store.chain_id, image.layer_diff_id);
    assert_eq!(store.reference, "openclaw-sandbox-custom:latest");
    assert_eq!(store.cache_id, cache_id(&store.chain_id));
    assert_eq!(store.cache_id.len(), 64);
    assert_eq!(store.link_id, link_id(&store.chain_id));
    assert_eq!(store.link_id.len(), 26);
    assert!(
        store
            .link_id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
    );

    let d = "var/lib/docker";
    let img = format!("{d}/image/overlay2");
    let layerdb = format!("{img}/layerdb/sha256/{chain_hex}");
    let ov = format!("{d}/overlay2");
    let cache = &store.cache_id;
    let diff = format!("{ov}/{cache}/diff");
    let dir = EntryType::Directory;
    let file = EntryType::Regular;
    let expected: Vec<(String, EntryType, u32, u64, u64)> = vec![
        (d.to_owned(), dir, 0o711, 0, 0),
        (format!("{d}/image"), dir, 0o700, 0, 0),
        (img.clone(), dir, 0o700, 0, 0),
        (format!("{img}/imagedb"), dir, 0o700, 0, 0),
        (format!("{img}/imagedb/content"), dir, 0o700, 0, 0),
        (format!("{img}/imagedb/content/sha256"), dir, 0o700, 0, 0),
        (
            format!("{img}/imagedb/content/sha256/{id_hex}"),
            file,
            0o600,
            0,
            0,
        ),
        (format!("{img}/imagedb/metadata"), dir, 0o700, 0, 0),
        (format!("{img}/imagedb/metadata/sha256"), dir, 0o700, 0, 0),
        (format!("{img}/layerdb"), dir, 0o700, 0, 0),
        (format!("{img}/layerdb/sha256"), dir, 0o755, 0, 0),
        (layerdb.clone(), dir, 0o700, 0, 0),
        (format!("{layerdb}/cache-id"), file, 0o644, 0, 0),
        (format!("{layerdb}/diff"), file, 0o644, 0, 0),
        (format!("{layerdb}/size"), file, 0o644, 0, 0),
        (format!("{img}/repositories.json"), file, 0o600, 0, 0),
        (ov.clone(), dir, 0o710, 0, 0),
        (format!("{ov}/l"), dir, 0o700, 0, 0),
        (
            format!("{ov}/l/{}", store.link_id),
            EntryType::Symlink,
            0o777,
            0,
            0,
        ),
        (format!("{ov}/{cache}"), dir, 0o710, 0, 0),
        (format!("{ov}/{cache}/link"), file, 0o644, 0, 0),
        (diff.clone(), dir, 0o755, 0, 0),
        (format!("{diff}/bin"), EntryType::Symlink, 0o777, 0, 0),
        (format!("{diff}/home"), dir, 0o755, 0, 0),
        (format!("{diff}/home/node"), dir, 0o750, 0, 0),
        (format!("{diff}/home/node/.bashrc"), file, 0o644, 1000, 1000),
        (format!("{diff}/usr"), dir, 0o755, 0, 0),
        (format!("{diff}/usr/bin"), dir, 0o755, 0, 0),
        (format!("{diff}/usr/bin/perl"), file, 0o755, 0, 0),
        (
            format!("{diff}/usr/bin/perl5.40.1"),
            EntryType::Link,
            0o755,
            0,
            0,
        ),
    ];
    let listing = super::store::listing(&out);
    let got: Vec<(String, EntryType, u32, u64, u64)> = listing
        .into_iter()
        .map(|(p, (t, m, u, g))| (p, t, m, u, g))
        .collect();
    let mut expected = expected;
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, expected);

    // Contents.
    let config_bytes = member_bytes(&out, &format!("{img}/imagedb/content/sha256/{id_hex}"));
    assert_eq!(digest_of(&config_bytes), image.image_id);
    assert_eq!(
        String::from_utf8(member_bytes(&out, &format!("{img}/repositories.json"))).unwrap(),
        format!(
            r#"{{"Repositories":{{"openclaw-sandbox-custom":{{"openclaw-sandbox-custom:latest":"{}"}}}}}}"#,
            image.image_id
        )
    );
    assert_eq!(
        member_bytes(&out, &format!("{layerdb}/diff")),
        image.layer_diff_id.as_bytes()
    );
    assert_eq!(
        member_bytes(&out, &format!("{layerdb}/cache-id")),
        cache.as_bytes()
    );
    // DiffSize: perl's 11 bytes once (the hard link shares its inode), the
    // symlink's target (7), .bashrc (5); directories count nothing.
    assert_eq!(store.diff_size, 11 + 7 + 5);
    assert_eq!(member_bytes(&out, &format!("{layerdb}/size")), b"23");
    assert_eq!(
        member_bytes(&out, &format!("{ov}/{cache}/link")),
        store.link_id.as_bytes()
    );
    assert_eq!(
        member_bytes(&out, &format!("{diff}/usr/bin/perl")),
        b"perl binary"
    );

    // Link targets: the l/ symlink, the layer's symlink verbatim, the hard
    // link re-pointed below diff/.
    let mut archive = Archive::new(std::fs::File::open(&out).unwrap());
    let mut links = BTreeMap::new();
    for e in archive.entries().unwrap() {
        let e = e.unwrap();
        if let Some(l) = e.link_name_bytes() {
            links.insert(
                String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                String::from_utf8_lossy(&l).into_owned(),
            );
        }
    }
    assert_eq!(
        links[&format!("{ov}/l/{}", store.link_id)],
        format!("../{cache}/diff")
    );
    assert_eq!(links[&format!("{diff}/bin")], "usr/bin");
    assert_eq!(
        links[&format!("{diff}/usr/bin/perl5.40.1")],
        format!("{diff}/usr/bin/perl")
    );
}

#[test]
fn two_stores_of_one_archive_are_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, info_a, a) = store_of(&tmp.path().join("a"), &IdMap::identity());
    let (_, info_b, b) = store_of(&tmp.path().join("b"), &IdMap::identity());
    assert_eq!(info_a, info_b);
    assert_eq!(
        hex::encode(Sha256::digest(std::fs::read(&a).unwrap())),
        hex::encode(Sha256::digest(std::fs::read(&b).unwrap()))
    );
    // Only the final file is left: no temporaries.
    assert_eq!(std::fs::read_dir(a.parent().unwrap()).unwrap().count(), 1);
}

#[test]
fn a_rootless_id_map_moves_every_owner() {
    let tmp = tempfile::tempdir().unwrap();
    // As a rootless daemon of uid 1001 with subuids from 100000 sees it.
    let ranges = vec![
        IdRange {
            inside: 0,
            outside: 1001,
            count: 1,
        },
        IdRange {
            inside: 1,
            outside: 100_000,
            count: 65_536,
        },
    ];
    let ids = IdMap::new(ranges.clone(), ranges);
    let (_, store, out) = store_of(tmp.path(), &ids);
    let listing = super::store::listing(&out);
    let diff = format!("var/lib/docker/overlay2/{}/diff", store.cache_id);
    assert_eq!(listing["var/lib/docker/image/overlay2"].2, 1001);
    assert_eq!(listing[&format!("{diff}/usr/bin/perl")].2, 1001);
    let bashrc = listing[&format!("{diff}/home/node/.bashrc")];
    assert_eq!((bashrc.2, bashrc.3), (100_999, 100_999));

    // An owner outside the map is an error naming it.
    let narrow = IdMap::new(
        vec![IdRange {
            inside: 0,
            outside: 0,
            count: 1,
        }],
        vec![IdRange {
            inside: 0,
            outside: 0,
            count: 65_536,
        }],
    );
    let dir = tmp.path().join("narrow");
    std::fs::create_dir_all(&dir).unwrap();
    let err = write_store(
        &tmp.path().join("image.tar"),
        &StoreOptions {
            root: "var/lib/docker",
            ids: &narrow,
            epoch: EPOCH,
        },
        &dir.join("store.tar"),
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("uid 1000 is outside the store's uid map"),
        "{err:#}"
    );
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "nothing half-written"
    );
}

#[test]
fn a_damaged_layer_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (image, _, _) = store_of(tmp.path(), &IdMap::identity());
    // Flip a byte of perl's data inside the archive's layer blob.
    let archive = tmp.path().join("image.tar");
    let mut bytes = std::fs::read(&archive).unwrap();
    let at = bytes.windows(11).position(|w| w == b"perl binary").unwrap();
    bytes[at] = b'P';
    std::fs::write(&archive, bytes).unwrap();
    let err = write_store(
        &archive,
        &StoreOptions {
            root: "var/lib/docker",
            ids: &IdMap::identity(),
            epoch: EPOCH,
        },
        &tmp.path().join("damaged.tar"),
    )
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains(&format!("but the config names {}", image.layer_diff_id)),
        "{msg}"
    );
    assert!(!tmp.path().join("damaged.tar").exists());
}

#[test]
fn base32_and_ids_are_stable() {
    assert_eq!(super::store::base32_for_tests(b"foobar"), "MZXW6YTBOI");
    assert_eq!(link_id("sha256:00"), link_id("sha256:00"));
    assert_ne!(link_id("sha256:00"), link_id("sha256:01"));
}
