# `cargo xtask ci`'s check of flake.nix where Nix cannot fetch nixpkgs:
# evaluates the flake's outputs against a stand-in nixpkgs whose packages
# are bare store paths, so a wrong attribute, a missing variable or a broken
# app fails here (`nix-instantiate --eval --strict nix/flake-eval.nix`).
# It proves the flake's own logic, not that nixpkgs has each package.
# A tool added to flake.nix is added to `names` below.
let
  flake = import ../flake.nix;
  names = [
    "cargo" "rustc" "rustfmt" "clippy" "gcc" "mmdebstrap" "gnupg"
    "debian-archive-keyring" "dpkg" "zstd" "qemu" "OVMF" "dnsmasq" "e2fsprogs"
    "util-linux" "iproute2" "openssh" "go" "git" "procps" "nix" "coreutils" "bash"
  ];
  genAttrs = ns: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) ns);
  package = name: { outPath = "/nix/store/stub-${name}"; fd = "/nix/store/stub-${name}-fd"; };
  pkgs = genAttrs names package // {
    mkShell = attrs: attrs;
    writeShellApplication = { name, runtimeInputs, runtimeEnv, text }:
      assert builtins.length runtimeInputs == builtins.length names;
      "/nix/store/stub-${name}";
  };
  nixpkgs = {
    lib = { inherit genAttrs; };
    legacyPackages = genAttrs [ "x86_64-linux" "aarch64-linux" ] (_: pkgs);
  };
  out = flake.outputs { self = { }; inherit nixpkgs; };
  shell = out.devShells.x86_64-linux.default;
in
assert builtins.length shell.packages == builtins.length names;
{
  variables = builtins.removeAttrs shell [ "packages" ];
  apps = builtins.mapAttrs (_: app: assert app.type == "app"; app.program) out.apps.x86_64-linux;
}
