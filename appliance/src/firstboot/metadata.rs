//! The Hetzner metadata document (`/hetzner/v1/metadata`, YAML): host name,
//! public SSH keys and the static IPv6 configuration.
//!
//! Parsed by a small hand-written reader for the block-style YAML subset
//! that document uses (mappings, sequences, plain and quoted scalars,
//! comments, block scalars skipped) rather than a YAML crate: the agent
//! runs as root on data from the network, needs three fields, and the
//! serde YAML crates are either archived (`serde_yaml`) or young. Only the
//! top-level sections it needs are parsed at all, so an unexpected
//! construct elsewhere (e.g. in `vendor_data`) cannot fail first boot; a
//! section it cannot read is reported as a warning and left out. Nothing
//! in this document is a secret.

use std::net::Ipv6Addr;

use super::userdata::valid_hostname;

/// What first boot uses from the metadata service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    /// `hostname`, if it is a valid host name.
    pub hostname: Option<String>,
    /// `public-keys`: OpenSSH public key lines.
    pub public_keys: Vec<String>,
    /// The static IPv6 address of the public interface.
    pub ipv6: Option<Ipv6Config>,
    /// What could not be read (each a short, value-free sentence).
    pub warnings: Vec<String>,
}

/// The static IPv6 configuration Hetzner gives in `network-config`
/// (Hetzner does not announce it by router advertisement).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Config {
    /// MAC address of the interface, lower case, if given.
    pub mac: Option<String>,
    /// Address with prefix length, e.g. `2a01:4f8:c17:1234::1/64`.
    pub address: Ipv6Addr,
    /// Prefix length.
    pub prefix: u8,
    /// Default gateway (usually `fe80::1`).
    pub gateway: Ipv6Addr,
}

/// Parses the metadata document. Never fails: what cannot be read is left
/// out and named in [`Metadata::warnings`].
pub fn parse(text: &str) -> Metadata {
    let mut md = Metadata::default();
    for (key, section) in top_level_sections(text) {
        let parsed = parse_yaml(&section).map_err(|e| format!("{key}: {e}"));
        let value = match parsed {
            Ok(Yaml::Map(entries)) => entries.into_iter().find(|(k, _)| *k == key).map(|(_, v)| v),
            Ok(_) => None,
            Err(e) => {
                md.warnings
                    .push(format!("metadata `{key}` not readable ({e})"));
                continue;
            }
        };
        let Some(value) = value else { continue };
        match key.as_str() {
            "hostname" => match value.as_str() {
                Some(h) if valid_hostname(&h.to_ascii_lowercase()) => {
                    md.hostname = Some(h.to_ascii_lowercase())
                }
                _ => md
                    .warnings
                    .push("metadata `hostname` is not a valid host name; ignored".into()),
            },
            "public-keys" => match value {
                Yaml::Seq(items) => {
                    for item in items {
                        match item.as_str() {
                            Some(k) if valid_public_key(k) => md.public_keys.push(k.trim().to_string()),
                            _ => md.warnings.push(
                                "a metadata `public-keys` entry is not an OpenSSH public key; ignored".into(),
                            ),
                        }
                    }
                }
                Yaml::Null => {}
                _ => md
                    .warnings
                    .push("metadata `public-keys` is not a list; ignored".into()),
            },
            "network-config" => match ipv6_from(&value) {
                Ok(v) => md.ipv6 = v,
                Err(e) => md.warnings.push(format!("metadata `network-config`: {e}")),
            },
            _ => {}
        }
    }
    md
}

fn valid_public_key(k: &str) -> bool {
    let k = k.trim();
    let mut parts = k.split_whitespace();
    let (Some(kind), Some(body)) = (parts.next(), parts.next()) else {
        return false;
    };
    !k.contains('\n')
        && (kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-"))
        && body.len() >= 16
        && body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
}

/// The first static IPv6 subnet of a `type: physical` entry (network
/// config v1, as Hetzner serves it).
fn ipv6_from(nc: &Yaml) -> Result<Option<Ipv6Config>, String> {
    let Some(Yaml::Seq(entries)) = nc.get("config") else {
        return Err("no `config` list".into());
    };
    for entry in entries {
        if entry.get("type").and_then(Yaml::as_str) != Some("physical") {
            continue;
        }
        let mac = entry
            .get("mac_address")
            .and_then(Yaml::as_str)
            .map(str::to_ascii_lowercase)
            .filter(|m| valid_mac(m));
        let Some(Yaml::Seq(subnets)) = entry.get("subnets") else {
            continue;
        };
        for subnet in subnets {
            let Some(address) = subnet.get("address").and_then(Yaml::as_str) else {
                continue;
            };
            let is_v6 =
                subnet.get("ipv6").and_then(Yaml::as_str) == Some("true") || address.contains(':');
            if !is_v6 || subnet.get("type").and_then(Yaml::as_str) != Some("static") {
                continue;
            }
            let (addr, prefix) = match address.split_once('/') {
                Some((a, p)) => (a, p.parse::<u8>().ok()),
                None => (address, Some(64)),
            };
            let (Ok(addr), Some(prefix)) = (addr.parse::<Ipv6Addr>(), prefix) else {
                return Err("the IPv6 address is not valid".into());
            };
            if prefix == 0 || prefix > 128 {
                return Err("the IPv6 prefix length is not valid".into());
            }
            let gateway = match subnet.get("gateway").and_then(Yaml::as_str) {
                Some(g) => g
                    .parse::<Ipv6Addr>()
                    .map_err(|_| "the IPv6 gateway is not valid".to_string())?,
                None => return Err("the IPv6 subnet has no gateway".into()),
            };
            return Ok(Some(Ipv6Config {
                mac,
                address: addr,
                prefix,
                gateway,
            }));
        }
    }
    Ok(None)
}

fn valid_mac(m: &str) -> bool {
    let parts: Vec<&str> = m.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The sections of the wanted top-level keys, each as its own text.
fn top_level_sections(text: &str) -> Vec<(String, String)> {
    const WANTED: &[&str] = &["hostname", "public-keys", "network-config"];
    let mut out: Vec<(String, String)> = Vec::new();
    let mut current: Option<usize> = None;
    for line in text.lines() {
        let starts_key = !line.starts_with([' ', '\t', '#', '-']) && !line.trim().is_empty();
        if starts_key {
            current = None;
            if let Some((key, _)) = line.split_once(':') {
                let key = key.trim().trim_matches(|c| c == '"' || c == '\'');
                if WANTED.contains(&key) && !out.iter().any(|(k, _)| k == key) {
                    out.push((key.to_string(), String::new()));
                    current = Some(out.len() - 1);
                }
            }
        }
        if let Some(i) = current {
            out[i].1.push_str(line);
            out[i].1.push('\n');
        }
    }
    out
}

/// A parsed YAML node of the subset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Yaml {
    /// A scalar, as text (no type resolution: `true` stays `"true"`).
    Str(String),
    /// A block or flow sequence.
    Seq(Vec<Yaml>),
    /// A mapping, in document order.
    Map(Vec<(String, Yaml)>),
    /// An empty value.
    Null,
}

impl Yaml {
    fn get(&self, key: &str) -> Option<&Yaml> {
        match self {
            Yaml::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Yaml::Str(s) => Some(s),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
struct Line {
    indent: usize,
    text: String,
}

/// Parses one block-style YAML document of the subset.
pub(crate) fn parse_yaml(text: &str) -> Result<Yaml, String> {
    let mut lines = Vec::new();
    for raw in text.lines() {
        if raw[..raw.len() - raw.trim_start().len()].contains('\t') {
            return Err("tab indentation".into());
        }
        let trimmed = raw.trim_start_matches(' ');
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed == "---" {
            continue;
        }
        lines.push(Line {
            indent: raw.len() - trimmed.len(),
            text: trimmed.trim_end().to_string(),
        });
    }
    if lines.is_empty() {
        return Ok(Yaml::Null);
    }
    let mut pos = 0;
    let indent = lines[0].indent;
    let v = parse_block(&mut lines, &mut pos, indent)?;
    if pos != lines.len() {
        return Err("unexpected indentation".into());
    }
    Ok(v)
}

fn is_seq_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

fn parse_block(lines: &mut [Line], pos: &mut usize, indent: usize) -> Result<Yaml, String> {
    if is_seq_item(&lines[*pos].text) {
        parse_seq(lines, pos, indent)
    } else {
        parse_map(lines, pos, indent)
    }
}

fn parse_seq(lines: &mut [Line], pos: &mut usize, indent: usize) -> Result<Yaml, String> {
    let mut items = Vec::new();
    while *pos < lines.len() && lines[*pos].indent == indent && is_seq_item(&lines[*pos].text) {
        let rest = lines[*pos].text[1..].trim_start().to_string();
        if rest.is_empty() {
            *pos += 1;
            if *pos < lines.len() && lines[*pos].indent > indent {
                let child = lines[*pos].indent;
                items.push(parse_block(lines, pos, child)?);
            } else {
                items.push(Yaml::Null);
            }
        } else if is_seq_item(&rest) || split_key(&rest).is_some() {
            // `- key: value` opens a mapping (or `- - x` a sequence) whose
            // first line starts where `rest` starts.
            let offset = lines[*pos].text.len() - rest.len();
            lines[*pos] = Line {
                indent: indent + offset,
                text: rest,
            };
            let child = indent + offset;
            items.push(parse_block(lines, pos, child)?);
        } else {
            *pos += 1;
            items.push(scalar_with_continuation(&rest, lines, pos, indent)?);
        }
    }
    Ok(Yaml::Seq(items))
}

fn parse_map(lines: &mut [Line], pos: &mut usize, indent: usize) -> Result<Yaml, String> {
    let mut entries = Vec::new();
    while *pos < lines.len() && lines[*pos].indent == indent && !is_seq_item(&lines[*pos].text) {
        let Some((key, value)) = split_key(&lines[*pos].text) else {
            return Err("expected `key: value`".into());
        };
        *pos += 1;
        let v = if value.is_empty() {
            match lines.get(*pos) {
                Some(next) if next.indent > indent => {
                    let child = next.indent;
                    parse_block(lines, pos, child)?
                }
                // A sequence may sit at its key's own indentation.
                Some(next) if next.indent == indent && is_seq_item(&next.text) => {
                    parse_seq(lines, pos, indent)?
                }
                _ => Yaml::Null,
            }
        } else if value.starts_with('|') || value.starts_with('>') {
            let mut text = Vec::new();
            while *pos < lines.len() && lines[*pos].indent > indent {
                text.push(lines[*pos].text.clone());
                *pos += 1;
            }
            Yaml::Str(text.join("\n"))
        } else {
            scalar_with_continuation(&value, lines, pos, indent)?
        };
        entries.push((key, v));
    }
    Ok(Yaml::Map(entries))
}

/// A scalar that may continue on more-indented lines (folded with spaces).
fn scalar_with_continuation(
    first: &str,
    lines: &[Line],
    pos: &mut usize,
    indent: usize,
) -> Result<Yaml, String> {
    let mut text = first.to_string();
    while *pos < lines.len() && lines[*pos].indent > indent {
        text.push(' ');
        text.push_str(&lines[*pos].text);
        *pos += 1;
    }
    scalar(&text)
}

/// Splits `key: value` (or `key:`) outside quotes; `None` if not a mapping line.
fn split_key(text: &str) -> Option<(String, String)> {
    let (key, rest) = if let Some(q) = text.chars().next().filter(|c| *c == '"' || *c == '\'') {
        let end = text[1..].find(q)? + 1;
        (text[1..end].to_string(), &text[end + 1..])
    } else {
        let i = text
            .find(": ")
            .or_else(|| text.ends_with(':').then(|| text.len() - 1))?;
        let key = &text[..i];
        if key.is_empty() || key.contains(['[', '{', '"', '\'']) || key.starts_with('-') {
            return None;
        }
        (key.trim_end().to_string(), &text[i..])
    };
    let rest = rest.strip_prefix(':')?;
    if !(rest.is_empty() || rest.starts_with(' ')) {
        return None;
    }
    Some((key, rest.trim().to_string()))
}

/// A flow scalar: quoted, plain (trailing ` #` comment removed) or a
/// simple flow collection of scalars.
fn scalar(text: &str) -> Result<Yaml, String> {
    let t = text.trim();
    if let Some(inner) = t.strip_prefix('"') {
        let Some(end) = find_closing_double(inner) else {
            return Err("unterminated double-quoted string".into());
        };
        return Ok(Yaml::Str(unescape_double(&inner[..end])));
    }
    if let Some(inner) = t.strip_prefix('\'') {
        let mut out = String::new();
        let mut chars = inner.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\'' {
                if chars.peek() == Some(&'\'') {
                    chars.next();
                    out.push('\'');
                } else {
                    return Ok(Yaml::Str(out));
                }
            } else {
                out.push(c);
            }
        }
        return Err("unterminated single-quoted string".into());
    }
    let plain = match t.find(" #") {
        Some(i) => t[..i].trim_end(),
        None => t,
    };
    if let Some(inner) = plain.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        if inner.trim().is_empty() {
            return Ok(Yaml::Seq(Vec::new()));
        }
        return inner
            .split(',')
            .map(scalar)
            .collect::<Result<Vec<_>, _>>()
            .map(Yaml::Seq);
    }
    if plain == "{}" {
        return Ok(Yaml::Map(Vec::new()));
    }
    if plain.starts_with(['{', '[', '&', '*', '!']) {
        return Err("unsupported YAML construct".into());
    }
    if plain.is_empty() || plain == "~" || plain == "null" {
        return Ok(Yaml::Null);
    }
    Ok(Yaml::Str(plain.to_string()))
}

fn find_closing_double(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(i),
            _ => {}
        }
    }
    None
}

fn unescape_double(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Shaped like Hetzner's answer (fake values), with a `vendor_data`
    /// that a naive reader would choke on.
    pub(crate) const SAMPLE: &str = "\
availability-zone: fsn1-dc14
hostname: claw-from-metadata
instance-id: 12345678
local-ipv4: ''
network-config:
  config:
  - mac_address: 96:00:00:AB:CD:EF
    name: eth0
    subnets:
    - dns_nameservers:
      - 185.12.64.2
      - 185.12.64.1
      ipv4: true
      type: dhcp
    - address: 2a01:4f8:c17:1234::1/64
      dns_nameservers:
      - 2a01:4ff:ff00::add:2
      - 2a01:4ff:ff00::add:1
      gateway: fe80::1
      ipv6: true
      type: static
    type: physical
  version: 1
public-ipv4: 203.0.113.7
public-keys:
- ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKE admin@example
- \"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABFAKEFAKEFAKE second@example\"
region: eu-central
vendor_data: \"#cloud-config\\nbootcmd:\\n- [cloud-init-per, once, x, echo]\\n\"
weird: { a: [1, {b: 2}] }
";

    #[test]
    fn hetzner_sample() {
        let md = parse(SAMPLE);
        assert_eq!(md.hostname.as_deref(), Some("claw-from-metadata"));
        assert_eq!(md.public_keys.len(), 2);
        assert!(md.public_keys[1].starts_with("ssh-rsa "));
        let v6 = md.ipv6.unwrap();
        assert_eq!(v6.address.to_string(), "2a01:4f8:c17:1234::1");
        assert_eq!(v6.prefix, 64);
        assert_eq!(v6.gateway.to_string(), "fe80::1");
        assert_eq!(v6.mac.as_deref(), Some("96:00:00:ab:cd:ef"));
        assert!(md.warnings.is_empty(), "{:?}", md.warnings);
    }

    #[test]
    fn partial_and_odd_documents() {
        assert_eq!(parse(""), Metadata::default());
        let md = parse("hostname: \"Bad_Name\"\npublic-keys: []\n");
        assert!(md.hostname.is_none());
        assert_eq!(md.warnings.len(), 1);
        let md = parse("network-config:\n  config: { odd: [flow] }\nhostname: ok-host\n");
        assert_eq!(md.hostname.as_deref(), Some("ok-host"));
        assert!(md.ipv6.is_none());
        assert_eq!(md.warnings.len(), 1);
        let md =
            parse("public-keys:\n  - not a key\n  - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFAKE x\n");
        assert_eq!(md.public_keys.len(), 1);
        assert_eq!(md.warnings.len(), 1);
    }

    #[test]
    fn yaml_subset() {
        let y = parse_yaml("a:\n  b: 'it''s'\n  c:\n  - x\n  - y: 1\n    z: \"q\\\"\"\nd: |\n  line1\n  line2\ne: plain # comment\n").unwrap();
        assert_eq!(
            y.get("a").and_then(|a| a.get("b")).and_then(Yaml::as_str),
            Some("it's")
        );
        let c = y.get("a").and_then(|a| a.get("c")).unwrap();
        let Yaml::Seq(items) = c else { panic!("{c:?}") };
        assert_eq!(items[0], Yaml::Str("x".into()));
        assert_eq!(items[1].get("z").and_then(Yaml::as_str), Some("q\""));
        assert_eq!(y.get("d").and_then(Yaml::as_str), Some("line1\nline2"));
        assert_eq!(y.get("e").and_then(Yaml::as_str), Some("plain"));
        assert!(parse_yaml("a: \"open\n").is_err());
    }
}
