{
  description = "Reproducible, tested disk images of a hardened OpenClaw appliance";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
  };

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAll = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # Every tool the README's two commands (`cargo xtask build-image`,
      # `cargo xtask ci`) run: the Rust toolchain, each host program of
      # `cargo xtask doctor` (its nixpkgs column, xtask/builder/src/doctor.rs)
      # and what the tests run besides.
      tools = pkgs: with pkgs; [
        # cargo xtask itself, fmt and clippy (ci), a C compiler for build scripts.
        cargo
        rustc
        rustfmt
        clippy
        gcc
        # doctor's requirements.
        mmdebstrap
        gnupg # gpgv
        debian-archive-keyring
        dpkg # dpkg-deb
        zstd
        qemu # qemu-system-x86_64, qemu-img
        OVMF
        dnsmasq
        e2fsprogs # debugfs
        util-linux # sfdisk
        iproute2 # ip
        openssh # ssh, ssh-keygen, sshd (upload, INF-2's git remote, the upload tests)
        go # Tailscale's source build, vm-test's test tailnet
        git # INF-2's git remote
        # The tests and ci besides: `kill` (upload tests), the flake parse.
        procps
        nix
        coreutils
        bash
      ];

      # Where the host's data files are: the variables the code reads
      # (docs/cli.md, "Environment"; a unit test checks these names against
      # the code, xtask/builder/src/doctor/tests.rs).
      locations = pkgs: {
        # nixpkgs' debian-archive-keyring installs the keyring as `.pgp`.
        OPENCLAW_DEBIAN_KEYRING = "${pkgs.debian-archive-keyring}/share/keyrings/debian-archive-keyring.pgp";
        VMTEST_OVMF_CODE = "${pkgs.OVMF.fd}/FV/OVMF_CODE.fd";
        VMTEST_OVMF_VARS = "${pkgs.OVMF.fd}/FV/OVMF_VARS.fd";
      };

      # `nix run .#<task> -- <flags>` from the checkout: `cargo xtask <task>`
      # with the dev shell's tools on PATH and its variables set.
      xtask = pkgs: name: {
        type = "app";
        program = "${pkgs.writeShellApplication {
          name = "xtask-${name}";
          runtimeInputs = tools pkgs;
          runtimeEnv = locations pkgs;
          text = ''
            exec cargo xtask ${name} "$@"
          '';
        }}/bin/xtask-${name}";
      };
    in {
      devShells = forAll (pkgs: {
        default = pkgs.mkShell ({ packages = tools pkgs; } // locations pkgs);
      });
      apps = forAll (pkgs: nixpkgs.lib.genAttrs
        [ "doctor" "lock" "fetch" "build-image" "vm-test" "verify-repro" "ci" ]
        (xtask pkgs));
    };
}
