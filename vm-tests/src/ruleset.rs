//! NET-2's reading of the firewall: the whole ruleset as `iptables-save`
//! and `ip6tables-save` print it (every table, not `ufw status`), walked
//! from the kernel's entry points, every rule that lets a packet in
//! classified.
//!
//! A packet addressed to the machine passes `nat PREROUTING` (where a
//! `DNAT`/`REDIRECT` would forward a port past the host's own rules) and
//! `filter INPUT`. So [`inbound_paths`] follows every jump and goto from
//! those two chains and names each `ACCEPT` it reaches (in `filter`) and
//! each port forward (in `nat`). An `ACCEPT` in a reachable chain is
//! counted even where an earlier rule might return first: the walk
//! over-approximates, it never misses a path. Only the shapes in
//! [`PathKind`] are allowed; any other is [`PathKind::Other`], and NET-2
//! fails on it, printing the rule.
//!
//! What this cannot see: tables made through nftables directly (not
//! through iptables-nft), which `iptables-save` does not print. The image
//! has no `nft` binary and no other tool that makes them; tailscaled could
//! (its nftables mode), so NET-2 also requires tailscaled's own `ts-input`
//! chain to be in this view whenever it is logged in.

use std::collections::{BTreeMap, BTreeSet};

/// One table of an `iptables-save` dump: chain name → its rules (the text
/// after `-A <chain> `), in order.
pub type Table = BTreeMap<String, Vec<String>>;

/// Parses an `iptables-save` dump into its tables (`*filter` … `COMMIT`).
pub fn parse(save: &str) -> BTreeMap<String, Table> {
    let mut tables: BTreeMap<String, Table> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in save.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('*') {
            current = Some(name.to_string());
            tables.entry(name.to_string()).or_default();
        } else if line == "COMMIT" {
            current = None;
        } else if let Some(table) = current.as_ref().and_then(|t| tables.get_mut(t)) {
            if let Some(decl) = line.strip_prefix(':') {
                if let Some(chain) = decl.split_whitespace().next() {
                    table.entry(chain.to_string()).or_default();
                }
            } else if let Some(rule) = line.strip_prefix("-A ") {
                let (chain, rest) = rule.split_once(' ').unwrap_or((rule, ""));
                table
                    .entry(chain.to_string())
                    .or_default()
                    .push(rest.to_string());
            }
        }
    }
    tables
}

/// The chains reachable from `entry` in `table` through `-j`/`-g` to a
/// chain of the same table (the entry included).
pub fn reachable(table: &Table, entry: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![entry.to_string()];
    while let Some(chain) = todo.pop() {
        if !seen.insert(chain.clone()) {
            continue;
        }
        for rule in table.get(&chain).into_iter().flatten() {
            if let Some(next) = target(rule).filter(|t| table.contains_key(*t)) {
                todo.push(next.to_string());
            }
        }
    }
    seen
}

/// A rule's `-j` or `-g` target.
fn target(rule: &str) -> Option<&str> {
    let w: Vec<&str> = rule.split_whitespace().collect();
    w.windows(2)
        .rev()
        .find(|p| p[0] == "-j" || p[0] == "-g")
        .map(|p| p[1])
}

/// The value of option `name` in a rule, unless the rule negates it
/// (`! -i tailscale0` is not a match on `tailscale0`).
fn option<'a>(words: &[&'a str], name: &str) -> Option<&'a str> {
    words.iter().enumerate().find_map(|(i, w)| {
        let negated = i > 0 && words[i - 1] == "!";
        (*w == name && !negated)
            .then(|| words.get(i + 1).copied())
            .flatten()
    })
}

/// What a path into the machine is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathKind {
    /// In on `lo`: the machine talking to itself.
    Loopback,
    /// In on `tailscale0`: the tailnet, the one allowed way in (NET-2).
    Tailnet,
    /// Conntrack `RELATED`/`ESTABLISHED` (no `NEW`): answers to the
    /// machine's own connections.
    Replies,
    /// ICMP or ICMPv6: no port, no service.
    Icmp,
    /// The DHCP client's answers (UDP 67→68, DHCPv6 547→546).
    DhcpClient,
    /// ufw's stock multicast accepts (mDNS 5353, SSDP 1900) to a multicast
    /// group address: open only if something binds the port, which NET-2
    /// checks on the machine.
    Multicast(u16),
    /// tailscaled's WireGuard port over UDP.
    WireGuard,
    /// Anything else: an opened port, a port forward, an unknown shape.
    Other,
}

/// One rule that lets packets in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// `filter` or `nat`.
    pub table: String,
    /// The chain holding it.
    pub chain: String,
    /// The rule as `iptables-save` prints it, after `-A <chain> `.
    pub rule: String,
    /// What it is for.
    pub kind: PathKind,
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} -A {} {}", self.table, self.chain, self.rule)
    }
}

/// The multicast groups of ufw's stock mDNS and SSDP accepts, as
/// `iptables-save` prints them.
const MULTICAST_GROUPS: [&str; 4] = [
    "224.0.0.251/32",
    "239.255.255.250/32",
    "ff02::fb/128",
    "ff02::f/128",
];

/// Classifies one `ACCEPT` rule of a chain reachable from `filter INPUT`.
pub fn classify(rule: &str, wireguard_port: u16) -> PathKind {
    let w: Vec<&str> = rule.split_whitespace().collect();
    let proto = option(&w, "-p");
    let dport = option(&w, "--dport");
    let sport = option(&w, "--sport");
    match option(&w, "-i") {
        Some("lo") => return PathKind::Loopback,
        Some("tailscale0") => return PathKind::Tailnet,
        _ => {}
    }
    if let Some(states) = option(&w, "--ctstate").or_else(|| option(&w, "--state"))
        && states
            .split(',')
            .all(|s| s == "RELATED" || s == "ESTABLISHED")
    {
        return PathKind::Replies;
    }
    match proto {
        Some("icmp" | "ipv6-icmp" | "icmpv6") => PathKind::Icmp,
        Some("udp") => match (sport, dport) {
            (Some("67"), Some("68")) | (Some("547"), Some("546")) => PathKind::DhcpClient,
            (_, Some(port)) if port == wireguard_port.to_string() => PathKind::WireGuard,
            (_, Some(port @ ("5353" | "1900")))
                if option(&w, "-d").is_some_and(|d| MULTICAST_GROUPS.contains(&d)) =>
            {
                port.parse().map_or(PathKind::Other, PathKind::Multicast)
            }
            _ => PathKind::Other,
        },
        _ => PathKind::Other,
    }
}

/// Every way in that a dump's tables ([`parse`]) allow: each `ACCEPT`
/// reachable from `filter INPUT`, classified, and each `DNAT`/`REDIRECT`
/// reachable from `nat PREROUTING` (always [`PathKind::Other`]: a
/// forwarded port).
pub fn inbound_paths(tables: &BTreeMap<String, Table>, wireguard_port: u16) -> Vec<Path> {
    let mut paths = Vec::new();
    let mut walk = |table: &str, entry: &str, keep: &dyn Fn(&str) -> Option<PathKind>| {
        let Some(t) = tables.get(table) else { return };
        for chain in reachable(t, entry) {
            for rule in t.get(&chain).into_iter().flatten() {
                if let Some(kind) = keep(rule) {
                    paths.push(Path {
                        table: table.to_string(),
                        chain: chain.clone(),
                        rule: rule.clone(),
                        kind,
                    });
                }
            }
        }
    };
    walk("filter", "INPUT", &|rule| {
        (target(rule) == Some("ACCEPT")).then(|| classify(rule, wireguard_port))
    });
    walk("nat", "PREROUTING", &|rule| {
        matches!(target(rule), Some("DNAT" | "REDIRECT")).then_some(PathKind::Other)
    });
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An abridged real dump: ufw's stock before.rules, the tailnet allow
    /// in user.rules, tailscaled's chain and the appliance's raw rules.
    const DUMP: &str = "\
# Generated by iptables-nft-save v1.8.11
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -d 169.254.169.254/32 -j DROP
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:ts-input - [0:0]
:ufw-before-input - [0:0]
:ufw-not-local - [0:0]
:ufw-user-input - [0:0]
:ufw-user-limit-accept - [0:0]
-A INPUT -j ts-input
-A INPUT -j ufw-before-input
-A ts-input -s 100.64.0.1/32 -i lo -j ACCEPT
-A ts-input -s 100.115.92.0/23 ! -i tailscale0 -j RETURN
-A ts-input -s 100.64.0.0/10 ! -i tailscale0 -j DROP
-A ts-input -i tailscale0 -j ACCEPT
-A ts-input -p udp -m udp --dport 41641 -j ACCEPT
-A ufw-before-input -i lo -j ACCEPT
-A ufw-before-input -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A ufw-before-input -m conntrack --ctstate INVALID -j DROP
-A ufw-before-input -p icmp -m icmp --icmp-type 8 -j ACCEPT
-A ufw-before-input -p udp -m udp --sport 67 --dport 68 -j ACCEPT
-A ufw-before-input -j ufw-not-local
-A ufw-before-input -d 224.0.0.251/32 -p udp -m udp --dport 5353 -j ACCEPT
-A ufw-before-input -d 239.255.255.250/32 -p udp -m udp --dport 1900 -j ACCEPT
-A ufw-before-input -j ufw-user-input
-A ufw-not-local -m addrtype --dst-type LOCAL -j RETURN
-A ufw-not-local -j DROP
-A ufw-user-input -i tailscale0 -j ACCEPT
-A ufw-user-limit-accept -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:ts-postrouting - [0:0]
-A POSTROUTING -j ts-postrouting
-A ts-postrouting -m mark --mark 0x40000/0xff0000 -j MASQUERADE
COMMIT
";

    /// The ways in of `dump` that NET-2 does not allow.
    fn not_allowed(dump: &str) -> Vec<Path> {
        inbound_paths(&parse(dump), 41641)
            .into_iter()
            .filter(|p| p.kind == PathKind::Other)
            .collect()
    }

    #[test]
    fn the_shipped_shape_has_only_allowed_paths() {
        let paths = inbound_paths(&parse(DUMP), 41641);
        assert!(not_allowed(DUMP).is_empty());
        let kinds: Vec<_> = paths.iter().map(|p| p.kind.clone()).collect();
        for k in [
            PathKind::Loopback,
            PathKind::Tailnet,
            PathKind::Replies,
            PathKind::Icmp,
            PathKind::DhcpClient,
            PathKind::Multicast(5353),
            PathKind::Multicast(1900),
            PathKind::WireGuard,
        ] {
            assert!(kinds.contains(&k), "{k:?} missing from {kinds:?}");
        }
        // ufw-user-limit-accept is never jumped to: not a path.
        assert!(!paths.iter().any(|p| p.chain == "ufw-user-limit-accept"));
    }

    #[test]
    fn a_port_opened_in_before_rules_is_found() {
        let bad = DUMP.replace(
            "-A ufw-before-input -j ufw-not-local\n",
            "-A ufw-before-input -j ufw-not-local\n\
             -A ufw-before-input -p tcp -m tcp --dport 8080 -j ACCEPT\n",
        );
        let other: Vec<String> = not_allowed(&bad).iter().map(Path::to_string).collect();
        assert_eq!(
            other,
            ["filter -A ufw-before-input -p tcp -m tcp --dport 8080 -j ACCEPT"]
        );
    }

    #[test]
    fn negations_new_states_foreign_groups_and_port_forwards_are_not_allowed() {
        for (rule, why) in [
            (
                "-A ufw-user-input ! -i tailscale0 -j ACCEPT",
                "negated interface",
            ),
            (
                "-A ufw-user-input -m conntrack --ctstate NEW,ESTABLISHED -j ACCEPT",
                "NEW",
            ),
            (
                "-A ufw-user-input -p udp -m udp --dport 5353 -j ACCEPT",
                "no group",
            ),
            (
                "-A ufw-user-input -d 10.0.0.1/32 -p udp -m udp --dport 1900 -j ACCEPT",
                "unicast",
            ),
            (
                "-A ufw-user-input -p tcp -m tcp --dport 41641 -j ACCEPT",
                "tcp",
            ),
            ("-A ufw-user-input -j ACCEPT", "everything"),
        ] {
            let bad = DUMP.replace("-A ufw-user-limit-accept -j ACCEPT\n", &format!("{rule}\n"));
            assert!(!not_allowed(&bad).is_empty(), "{why}: {rule}");
        }
        let forward = DUMP.replace(
            "-A POSTROUTING -j ts-postrouting\n",
            "-A POSTROUTING -j ts-postrouting\n\
             -A PREROUTING -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.0.0.2:80\n",
        );
        let found = not_allowed(&forward);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].table, "nat");
    }

    #[test]
    fn a_jump_to_an_accepting_chain_makes_it_reachable() {
        let bad = DUMP.replace(
            "-A ufw-user-input -i tailscale0 -j ACCEPT\n",
            "-A ufw-user-input -i tailscale0 -j ACCEPT\n\
             -A ufw-user-input -p tcp -m tcp --dport 22 -g ufw-user-limit-accept\n",
        );
        let other = not_allowed(&bad);
        assert_eq!(other.len(), 1);
        assert_eq!(other[0].chain, "ufw-user-limit-accept");
    }
}
