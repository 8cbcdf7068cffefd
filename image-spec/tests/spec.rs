//! Spec parsing and validation: the real image.toml parses, and every kind
//! of bad input gives one error naming file, line/column, field and fix.

use image_spec::Spec;

const SPEC: &str = include_str!("../../image.toml");

/// Replaces `from` (which must occur exactly once) with `to` in the real spec
/// and returns the rendered error.
#[track_caller]
fn error_after(from: &str, to: &str) -> String {
    assert_eq!(
        SPEC.matches(from).count(),
        1,
        "`{from}` must occur once in image.toml"
    );
    let text = SPEC.replace(from, to);
    match Spec::parse("image.toml", &text) {
        Ok(_) => panic!("`{to}` was accepted"),
        Err(e) => e.to_string(),
    }
}

/// The spec with Tailscale from the release tarball (the documented alternative).
fn tarball_spec() -> String {
    let module = "version = \"1.102.5\"\n";
    assert_eq!(SPEC.matches(module).count(), 1);
    SPEC.replace(module, "version = \"1.102.4\"\n")
        .replace(
            "source = \"module\"\n",
            "source = \"tarball\"\nurl = \"https://release.example/stable/tailscale_1.102.4_amd64.tgz\"\n\
             sha256 = \"50748df1045e60b5b695f19f4c56b0da36c019948b440fb456b6584a50f0d8b9\"\n",
        )
}

/// Like [`error_after`], on [`tarball_spec`].
#[track_caller]
fn tarball_error_after(from: &str, to: &str) -> String {
    let spec = tarball_spec();
    assert_eq!(spec.matches(from).count(), 1, "`{from}` must occur once");
    match Spec::parse("image.toml", &spec.replace(from, to)) {
        Ok(_) => panic!("`{to}` was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_tarball_alternative_parses() {
    let spec = Spec::parse("image.toml", &tarball_spec()).unwrap();
    assert_eq!(spec.tailscale.version, "1.102.4");
    assert!(matches!(
        spec.tailscale.source,
        image_spec::spec::TailscaleSource::Tarball { .. }
    ));
}

#[test]
fn tailscale_unknown_source() {
    insta::assert_snapshot!(error_after("source = \"module\"", "source = \"git\""));
}

#[test]
fn tailscale_url_with_module_source() {
    insta::assert_snapshot!(error_after(
        "source = \"module\"",
        "source = \"module\"\nurl = \"https://example.test/tailscale_1.102.5_amd64.tgz\""
    ));
}

#[test]
fn tailscale_tarball_without_sha256() {
    insta::assert_snapshot!(tarball_error_after(
        "\nsha256 = \"50748df1045e60b5b695f19f4c56b0da36c019948b440fb456b6584a50f0d8b9\"\n",
        "\n"
    ));
}

#[test]
fn tailscale_version_with_v() {
    insta::assert_snapshot!(error_after(
        "version = \"1.102.5\"",
        "version = \"v1.102.5\""
    ));
}

#[test]
fn the_real_spec_parses() {
    let spec = Spec::parse("image.toml", SPEC).unwrap();
    assert_eq!(spec.openclaw.version, "2026.9.6");
    assert_eq!(spec.node.version.to_string(), "24.21.0");
    assert_eq!(spec.tailscale.version, "1.102.5");
    assert_eq!(spec.tailscale.module_version(), "v1.102.5");
    assert_eq!(spec.gateway.port, 18789);
    assert_eq!(spec.gateway_user().uid, 1000);
    assert!(!spec.features.openssh && !spec.features.node_exec && !spec.features.elevated_tools);
    assert_eq!(
        spec.debian.suites,
        ["trixie", "trixie-updates", "trixie-security"]
    );
    insta::assert_json_snapshot!("resolved_spec", spec);
}

#[test]
fn typo_in_a_key() {
    insta::assert_snapshot!(error_after(
        "hostname = \"openclaw\"",
        "hostnme = \"openclaw\""
    ));
}

#[test]
fn unknown_table() {
    insta::assert_snapshot!(error_after("[features]", "[feature]"));
}

#[test]
fn missing_key() {
    insta::assert_snapshot!(error_after("disk-size-mib = 4096\n", ""));
}

#[test]
fn wrong_type() {
    insta::assert_snapshot!(error_after(
        "disk-size-mib = 4096",
        "disk-size-mib = \"4G\""
    ));
}

#[test]
fn node_version_range() {
    insta::assert_snapshot!(error_after("version = \"24.21.0\"", "version = \"24.x\""));
}

#[test]
fn openclaw_version_tag() {
    insta::assert_snapshot!(error_after(
        "version = \"2026.9.6\"",
        "version = \"latest\""
    ));
}

#[test]
fn bad_architecture() {
    insta::assert_snapshot!(error_after(
        "architecture = \"amd64\"",
        "architecture = \"x86_64\""
    ));
}

#[test]
fn bad_sha256() {
    insta::assert_snapshot!(tarball_error_after(
        "\nsha256 = \"50748df1045e60b5b695f19f4c56b0da36c019948b440fb456b6584a50f0d8b9\"\n",
        "\nsha256 = \"50748DF1\"\n"
    ));
}

#[test]
fn tailscale_url_for_other_version() {
    insta::assert_snapshot!(tarball_error_after(
        "\nurl = \"https://release.example/stable/tailscale_1.102.4_amd64.tgz\"\n",
        "\nurl = \"https://release.example/stable/tailscale_1.100.0_amd64.tgz\"\n"
    ));
}

#[test]
fn package_with_version() {
    insta::assert_snapshot!(error_after("  \"jq\",\n", "  \"jq=1.7\",\n"));
}

#[test]
fn duplicate_package() {
    insta::assert_snapshot!(error_after("  \"tree\",\n", "  \"tree\",\n  \"tree\",\n"));
}

#[test]
fn host_network_sandbox() {
    insta::assert_snapshot!(error_after("network = \"bridge\"", "network = \"host\""));
}

#[test]
fn bad_hostname() {
    insta::assert_snapshot!(error_after(
        "hostname = \"openclaw\"",
        "hostname = \"Open_Claw\""
    ));
}

#[test]
fn root_granting_group() {
    insta::assert_snapshot!(error_after("groups = []", "groups = [\"docker\"]"));
}

#[test]
fn bad_bind() {
    insta::assert_snapshot!(error_after("bind = \"loopback\"", "bind = \"0.0.0.0\""));
}

#[test]
fn model_without_provider() {
    insta::assert_snapshot!(error_after(
        "model = \"anthropic/claude-opus-5\"",
        "model = \"claude-opus-5\""
    ));
}

#[test]
fn epoch_in_milliseconds() {
    insta::assert_snapshot!(error_after("1763942400", "1763942400000"));
}

#[test]
fn suites_out_of_order() {
    insta::assert_snapshot!(error_after(
        "suites = [\"trixie\", \"trixie-updates\", \"trixie-security\"]",
        "suites = [\"trixie-updates\", \"trixie\"]"
    ));
}

#[test]
fn bad_trusted_proxy() {
    insta::assert_snapshot!(error_after(
        "trusted-proxies = [\"127.0.0.1\"]",
        "trusted-proxies = [\"127.0.0.1\", \"100.64.0.0/99\"]"
    ));
}

#[test]
fn unpinned_plugin() {
    insta::assert_snapshot!(error_after(
        "plugins = []",
        "plugins = [\"@openclaw/voice\"]"
    ));
}

#[test]
fn mirror_not_a_url() {
    insta::assert_snapshot!(error_after(
        "# mirror = \"http://mirror.example/debian\"",
        "mirror = \"mirror.example/debian\""
    ));
}

#[test]
fn every_key_is_documented() {
    let doc = include_str!("../../docs/image-spec.md");
    let table: toml::Table = toml::from_str(SPEC).unwrap();
    for (section, value) in &table {
        assert!(
            doc.contains(&format!("`[{section}]`")) || doc.contains(&format!("`[[{section}]]`")),
            "docs/image-spec.md lacks [{section}]"
        );
        let keys: Vec<&String> = match value {
            toml::Value::Table(t) => t.keys().collect(),
            toml::Value::Array(a) => a
                .iter()
                .filter_map(|v| v.as_table())
                .flat_map(|t| t.keys())
                .collect(),
            _ => vec![],
        };
        for key in keys {
            assert!(
                doc.contains(&format!("`{key}`")),
                "docs/image-spec.md lacks `{section}.{key}`"
            );
        }
    }
}

#[test]
fn sandbox_memory_not_a_limit() {
    insta::assert_snapshot!(error_after("memory = \"1g\"", "memory = \"1 GB\""));
}

#[test]
fn sandbox_limits_default_when_absent() {
    let text = SPEC
        .replace("pids-limit = 512", "")
        .replace("memory = \"1g\"", "")
        .replace("cpus = 1 ", "");
    let spec = Spec::parse("image.toml", &text).unwrap();
    assert_eq!(
        (
            spec.sandbox.pids_limit,
            spec.sandbox.memory.as_str(),
            spec.sandbox.cpus
        ),
        (512, "1g", 1)
    );
}
