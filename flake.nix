{
  description = "Reproducible, tested disk images of a hardened OpenClaw appliance";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
  };

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAll = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
      # Every host tool `cargo xtask doctor` checks for.
      hostTools = pkgs: with pkgs; [
        mmdebstrap
        gnupg # gpgv
        debian-archive-keyring
        dpkg
        zstd
        qemu # qemu-system-x86_64, qemu-img
        OVMF
        iproute2
        dnsmasq
        e2fsprogs # debugfs
        go # Tailscale's source build; image.lock pins the version (GOTOOLCHAIN=go<ver> fetches it)
        nix
      ];
      xtask = pkgs: name: {
        type = "app";
        program = toString (pkgs.writeShellScript "xtask-${name}" ''
          exec cargo xtask ${name} "$@"
        '');
      };
    in {
      devShells = forAll (pkgs: {
        default = pkgs.mkShell {
          packages = [ pkgs.cargo pkgs.rustc pkgs.rustfmt pkgs.clippy ] ++ hostTools pkgs;
          OVMF_FD_DIR = "${pkgs.OVMF.fd}/FV";
        };
      });
      apps = forAll (pkgs: {
        lock = xtask pkgs "lock";
        fetch = xtask pkgs "fetch";
        doctor = xtask pkgs "doctor";
        ci = xtask pkgs "ci";
      });
    };
}
