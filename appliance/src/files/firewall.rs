//! UFW, baked as files: enabled, deny incoming, allow outgoing, allow in on
//! `tailscale0` only, IPv4 and IPv6 (NET-1, NET-2). Effective at first boot
//! with no runtime provisioning.

use image_spec::Spec;

use crate::tree::Tree;

pub(super) fn render(tree: &mut Tree, spec: &Spec) {
    let enabled = if spec.gateway.firewall { "yes" } else { "no" };
    tree.file(
        "etc/ufw/ufw.conf",
        0o644,
        format!(
            "# Written by the image build (NET-1).\n\
             ENABLED={enabled}\n\
             LOGLEVEL=low\n"
        ),
    );
    tree.file(
        "etc/default/ufw",
        0o644,
        "# Written by the image build (NET-1, NET-2).\n\
         IPV6=yes\n\
         DEFAULT_INPUT_POLICY=\"DROP\"\n\
         DEFAULT_OUTPUT_POLICY=\"ACCEPT\"\n\
         DEFAULT_FORWARD_POLICY=\"DROP\"\n\
         DEFAULT_APPLICATION_POLICY=\"SKIP\"\n\
         MANAGE_BUILTINS=no\n\
         IPT_SYSCTL=/etc/ufw/sysctl.conf\n\
         IPT_MODULES=\"\"\n",
    );
    tree.file("etc/ufw/user.rules", 0o640, user_rules(false));
    tree.file("etc/ufw/user6.rules", 0o640, user_rules(true));
}

/// ufw's user rules file, as `ufw allow in on tailscale0` writes it.
fn user_rules(v6: bool) -> String {
    let (chain, any) = if v6 {
        ("ufw6", "::/0")
    } else {
        ("ufw", "0.0.0.0/0")
    };
    let mut s = String::from("*filter\n");
    for name in [
        "user-input",
        "user-output",
        "user-forward",
        "before-logging-input",
        "before-logging-output",
        "before-logging-forward",
        "user-logging-input",
        "user-logging-output",
        "user-logging-forward",
        "after-logging-input",
        "after-logging-output",
        "after-logging-forward",
        "logging-deny",
        "logging-allow",
        "user-limit",
        "user-limit-accept",
    ] {
        s.push_str(&format!(":{chain}-{name} - [0:0]\n"));
    }
    s.push_str(&format!(
        "### RULES ###\n\n\
         ### tuple ### allow any any {any} any {any} in_tailscale0\n\
         -A {chain}-user-input -i tailscale0 -j ACCEPT\n\n\
         ### END RULES ###\n\n\
         ### LOGGING ###\n\
         -A {chain}-after-logging-input -j LOG --log-prefix \"[UFW BLOCK] \" -m limit --limit 3/min --limit-burst 10\n\
         -A {chain}-after-logging-forward -j LOG --log-prefix \"[UFW BLOCK] \" -m limit --limit 3/min --limit-burst 10\n\
         -I {chain}-logging-deny -m conntrack --ctstate INVALID -j RETURN -m limit --limit 3/min --limit-burst 10\n\
         -A {chain}-logging-deny -j LOG --log-prefix \"[UFW BLOCK] \" -m limit --limit 3/min --limit-burst 10\n\
         -A {chain}-logging-allow -j LOG --log-prefix \"[UFW ALLOW] \" -m limit --limit 3/min --limit-burst 10\n\
         ### END LOGGING ###\n\n\
         ### RATE LIMITING ###\n\
         -A {chain}-user-limit -m limit --limit 3/minute -j LOG --log-prefix \"[UFW LIMIT BLOCK] \"\n\
         -A {chain}-user-limit -j REJECT\n\
         -A {chain}-user-limit-accept -j ACCEPT\n\
         ### END RATE LIMITING ###\n\
         COMMIT\n"
    ));
    s
}
