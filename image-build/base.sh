#!/usr/bin/env bash
# The Debian part of the image: an arm64 bookworm root file system with the kernel, the
# Raspberry Pi firmware and the network stack, packed as a tarball. It takes about 20
# minutes (mkinitramfs under emulation), so build.sh keeps the result in its cache keyed
# by this file's contents and only rebuilds it when the recipe changes.
#
#   image-build/base.sh OUT.tar [MIRROR]
set -euo pipefail
out="$1"
mirror="${2:-http://deb.debian.org/debian}"

packages=(
    # boot and init
    systemd systemd-sysv udev kmod linux-image-arm64 raspi-firmware
    # the file systems the box checks and grows at boot
    e2fsprogs dosfstools fdisk
    # network: wired and Wi-Fi by systemd-networkd, names and mDNS (hostname.local) by
    # systemd-resolved, the clock by systemd-timesyncd (the Pi has no RTC and TLS needs time)
    systemd-resolved libnss-resolve systemd-timesyncd iproute2 netbase
    wpasupplicant wireless-regdb firmware-brcm80211
    # the system bus: timedatectl (time zone, NTP state), and systemctl run by a user other
    # than root, talk to systemd-timedated, systemd-timesyncd and systemd over it. minbase
    # installs no Recommends, so without it `timedatectl show` fails. The time zones
    # themselves (/usr/share/zoneinfo) come with tzdata, which minbase has (Priority:
    # required in bookworm).
    dbus
    # remote maintenance, off unless the first-boot file gives a key
    openssh-server
    # updates without reflashing (issue 18): RAUC installs signed bundles into the other
    # root slot over D-Bus (rauc-service), fw_setenv/fw_printenv (libubootenv-tool) keep the
    # boot order and attempts in the raw U-Boot environment, and the Pi boots Debian's
    # U-Boot (u-boot-rpi), which runs boot.scr to pick the slot
    rauc rauc-service libubootenv-tool u-boot-rpi
    # what the photo-pacs .deb depends on (build.sh installs it with dpkg -i, which installs
    # no dependencies: each one must be here), and the CA certificates for DICOMweb/TLS peers
    adduser libturbojpeg0 ca-certificates
)

# The initramfs must find the root on an SD card (Pi) and on virtio (the qemu test), so it
# carries every block driver; MODULES=dep cannot work in a chroot. gzip because it is the
# quickest to produce under emulation. Making it takes about 18 minutes here, and apt would
# make it twice (the kernel's postinst, then initramfs-tools' trigger once later packages
# add their hooks), so update-initramfs is a no-op while packages install and runs once at
# the end; its raspi-firmware hook then copies kernel and initrd to /boot/firmware.
essential_hook='mkdir -p "$1/etc/initramfs-tools/conf.d" &&
    printf "MODULES=most\nCOMPRESS=gzip\n" > "$1/etc/initramfs-tools/conf.d/photo-pacs.conf" &&
    chroot "$1" dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs &&
    printf "#!/bin/sh\nexit 0\n" > "$1/usr/sbin/update-initramfs" &&
    chmod 755 "$1/usr/sbin/update-initramfs"'
customize_hook='rm "$1/usr/sbin/update-initramfs" &&
    chroot "$1" dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs &&
    chroot "$1" sh -c "update-initramfs -c -k \$(ls /lib/modules)"'

sources="deb $mirror bookworm main non-free-firmware
deb $mirror bookworm-updates main non-free-firmware
deb ${mirror%/debian}/debian-security bookworm-security main non-free-firmware
deb $mirror bookworm-backports non-free-firmware"

# The Wi-Fi firmware only from bookworm-backports: bookworm's own lacks the Pi Zero 2 W's
# NVRAM file (brcmfmac43430-sdio.raspberrypi,model-zero-2-w.txt). Nothing else comes from
# backports.
setup_hook='mkdir -p "$1/etc/apt/preferences.d" &&
    printf "Package: firmware-brcm80211\nPin: release n=bookworm-backports\nPin-Priority: 990\n" \
        > "$1/etc/apt/preferences.d/photo-pacs-wifi-firmware"'

IFS=,
mmdebstrap --architectures=arm64 --variant=minbase --format=tar \
    --include="${packages[*]}" \
    --setup-hook="$setup_hook" \
    --essential-hook="$essential_hook" \
    --customize-hook="$customize_hook" \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    bookworm "$out" - <<<"$sources"
