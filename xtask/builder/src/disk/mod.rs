//! Disk assembly: GPT, ext4 root from a tarball, ESP, GRUB for BIOS and UEFI.
