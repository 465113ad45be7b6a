#!/usr/bin/env bash
# Builds photo-pacs-<version>-arm64.img: a Raspberry Pi 3 / 4 / Zero 2 W SD-card image made
# of Debian bookworm packages and the photo-pacs .deb. See image-build/README.md.
#
#   sudo image-build/build.sh
#
# Environment (all optional):
#   PHOTO_PACS_DEB   the arm64 photo-pacs .deb to install (default: build it with .ci/arm64 --deb)
#   CLOUDFLARED_DEB  Cloudflare's cloudflared-linux-arm64.deb; without it the tunnel unit is inert
#   OUT_DIR          where the image goes (default: target/image)
#   CACHE_DIR        where the Debian base is kept between builds (default: $OUT_DIR/cache)
#   MIRROR           Debian mirror (default: http://deb.debian.org/debian)
#   DATA_MB          size of the data partition in the image; it grows to fill the card at
#                    first boot (default: 256)
#   SLOT_MB          size of each of the two root slots (default: 1536); an update's root
#                    file system must fit in it, so it is fixed for the life of a card
#   IMAGE_VERSION    the version this image and its update bundles carry (default: the
#                    crate's version + the build time, e.g. 0.1.0+20261130221500); updates
#                    are refused when older than the running one
#   RAUC_KEYRING     the CA certificate (PEM) update bundles must be signed under. Without
#                    it, development keys are made once in KEY_DIR and used, with a warning:
#                    whoever has that directory can sign updates for the image
#   KEY_DIR          where development keys live (default: $OUT_DIR/keys)
#   EXTRA_OVERLAY    a directory copied over the root file system last (tests only)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
out_dir="${OUT_DIR:-$repo/target/image}"
cache_dir="${CACHE_DIR:-$out_dir/cache}"
mirror="${MIRROR:-http://deb.debian.org/debian}"
data_mb="${DATA_MB:-256}"
slot_mb="${SLOT_MB:-1536}"
key_dir="${KEY_DIR:-$out_dir/keys}"
boot_mb=256
# Must match /etc/rauc/system.conf (overlay) and what image-build/bundle.sh writes.
compatible=photo-pacs-rpi-arm64
# The MBR disk ID: the root slots are found by PARTUUID 50504143-02 and -03 (boot.scr,
# system.conf, photo-pacs-fw-env.service).
disk_id=0x50504143
started=$(date +%s)

die() { echo "build.sh: $*" >&2; exit 1; }
step() { echo "== $* ($(( $(date +%s) - started )) s)"; }

# ---- what the build host needs (image-build/README.md) -------------------------------
[ "$(id -u)" -eq 0 ] || die "run as root: the root file system is unpacked with its owners and entered with chroot"
missing=()
# arch-test: mmdebstrap's check that arm64 programs run here (a Recommends of mmdebstrap,
# so --no-install-recommends leaves it out).
for tool in mmdebstrap arch-test mke2fs mkfs.vfat mcopy mmd sfdisk qemu-aarch64-static tar sha256sum mkimage mkenvimage openssl; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] || die "missing ${missing[*]}; on Debian 12: apt-get install mmdebstrap arch-test e2fsprogs dosfstools mtools fdisk qemu-user-static u-boot-tools openssl"
mke2fs_version=$(mke2fs -V 2>&1 | head -n1 | awk '{print $2}')
[ "$(printf '%s\n1.47.0\n' "$mke2fs_version" | sort -V | head -n1)" = 1.47.0 ] ||
    die "mke2fs $mke2fs_version is too old: 1.47 or later copies a directory with owners and attributes (-d)"
# arm64 programs run in the chroot through binfmt_misc and qemu-user-static.
if ! [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc ||
        die "cannot mount binfmt_misc (needed to run arm64 programs in the chroot)"
    [ -f /usr/lib/binfmt.d/qemu-aarch64.conf ] || die "qemu-user-static has no /usr/lib/binfmt.d/qemu-aarch64.conf"
    cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register ||
        die "cannot register qemu-aarch64 with binfmt_misc"
fi
mkdir -p "$out_dir" "$cache_dir"
free_kb=$(df -Pk "$out_dir" | awk 'NR == 2 {print $4}')
[ "$free_kb" -gt $((6 * 1024 * 1024)) ] || die "less than 6 GB free in $out_dir"
if [ -n "${CLOUDFLARED_DEB:-}" ]; then
    [ -f "$CLOUDFLARED_DEB" ] || die "CLOUDFLARED_DEB=$CLOUDFLARED_DEB: no such file"
    dpkg-deb -f "$CLOUDFLARED_DEB" Architecture | grep -qx arm64 ||
        die "CLOUDFLARED_DEB is not an arm64 package (download cloudflared-linux-arm64.deb)"
fi

version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -n1)
image="$out_dir/photo-pacs-$version-arm64.img"
rootfs_out="$out_dir/photo-pacs-$version-arm64.rootfs.ext4"
image_version="${IMAGE_VERSION:-$version+$(date -u +%Y%m%d%H%M%S)}"
case "$image_version" in
    *[!0-9A-Za-z.+~-]* | "" | [!0-9]*) die "IMAGE_VERSION=$image_version: digits first, then only letters, digits and . + ~ -" ;;
esac

# ---- the update keyring -------------------------------------------------------------------
if [ -n "${RAUC_KEYRING:-}" ]; then
    [ -f "$RAUC_KEYRING" ] || die "RAUC_KEYRING=$RAUC_KEYRING: no such file"
    keyring="$RAUC_KEYRING"
else
    keyring="$key_dir/dev-ca.cert.pem"
    if ! [ -f "$keyring" ]; then
        step "making development update keys in $key_dir"
        "$here/dev-keys.sh" "$key_dir"
    fi
    echo "build.sh: WARNING: this image trusts the development update keys in $key_dir;" >&2
    echo "build.sh: give RAUC_KEYRING=<your CA certificate> for an image that goes to a clinic" >&2
fi
openssl x509 -in "$keyring" -noout 2>/dev/null || die "$keyring is not a PEM certificate"

# ---- the photo-pacs package -----------------------------------------------------------
deb="${PHOTO_PACS_DEB:-}"
if [ -z "$deb" ]; then
    step "building the arm64 photo-pacs .deb (.ci/arm64 --deb)"
    "$repo/.ci/arm64" --deb
    deb=$(ls -t "$repo"/target/cross-aarch64/photo-pacs_*_arm64.deb | head -n1)
fi
[ -f "$deb" ] || die "PHOTO_PACS_DEB=$deb: no such file"
dpkg-deb -f "$deb" Architecture | grep -qx arm64 || die "$deb is not an arm64 package"

# ---- the Debian base, cached by its recipe ----------------------------------------------
key=$(cat "$here/base.sh" <(echo "$mirror") | sha256sum | cut -c1-16)
base="$cache_dir/base-$key.tar"
if [ -s "$base" ]; then
    step "Debian base from the cache: $base"
else
    step "building the Debian base (about 20 minutes: the initramfs is made under emulation)"
    "$here/base.sh" "$base.partial" "$mirror"
    mv "$base.partial" "$base"
fi

# ---- the root file system ---------------------------------------------------------------
work="$out_dir/work"
umount "$work/root/proc" 2>/dev/null || true
rm -rf "$work"
mkdir -p "$work/root" "$work/data"
root="$work/root"
data="$work/data"
step "unpacking the base"
tar --xattrs --xattrs-include='*' --numeric-owner -xpf "$base" -C "$root"

# Maintainer scripts (systemd-tmpfiles, systemctl) need /proc; nothing else is mounted.
mount -t proc proc "$root/proc"
trap 'umount "$root/proc" 2>/dev/null || true' EXIT
step "installing $(basename "$deb")${CLOUDFLARED_DEB:+ and $(basename "$CLOUDFLARED_DEB")}"
mkdir -p "$root/tmp/debs"
cp "$deb" "$root/tmp/debs/"
[ -z "${CLOUDFLARED_DEB:-}" ] || cp "$CLOUDFLARED_DEB" "$root/tmp/debs/"
# dpkg -i fetches nothing: everything the packages depend on must already be in the base.
chroot "$root" sh -c 'dpkg -i /tmp/debs/*.deb' ||
    die "dpkg -i failed: if it names a dependency that is not installed, add that package to base.sh's list (the .deb's Depends: $(dpkg-deb -f "$deb" Depends))"
rm -rf "$root/tmp/debs"

step "configuring: read-only root, /data, first-boot file, A/B updates ($image_version)"
cp -a "$here/overlay/." "$root/"
install -m 0644 "$keyring" "$root/etc/rauc/keyring.pem"
printf 'VERSION=%s\nCOMPATIBLE=%s\n' "$image_version" "$compatible" > "$root/etc/photo-pacs-release"
grep -qx "compatible=$compatible" "$root/etc/rauc/system.conf" || die "overlay/etc/rauc/system.conf does not say compatible=$compatible"
# fw_setenv/fw_printenv find the boot state through this (photo-pacs-fw-env.service).
ln -sfn /run/photo-pacs/fw_env.config "$root/etc/fw_env.config"
if [ -n "${EXTRA_OVERLAY:-}" ]; then
    [ -d "$EXTRA_OVERLAY" ] || die "EXTRA_OVERLAY=$EXTRA_OVERLAY: no such directory"
    cp -a "$EXTRA_OVERLAY/." "$root/"
fi
chroot "$root" systemctl enable systemd-networkd systemd-resolved systemd-timesyncd \
    photo-pacs.service photo-pacs-provision.service photo-pacs-cloudflared.service \
    photo-pacs-grow-data.service photo-pacs-time.service photo-pacs-time.path \
    photo-pacs-machine-id.service photo-pacs-fw-env.service photo-pacs-boot-check.service \
    photo-pacs-reboot.path photo-pacs-reboot-clear.service
# Jobs that write to the read-only root, or fetch package lists nobody installs from.
chroot "$root" systemctl mask apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
    e2scrub_all.timer e2scrub_reap.service
# Made on each box, never baked into the image: SSH host keys (made on /data when SSH is
# enabled) and the machine ID (empty: systemd makes a new one in memory at each boot).
rm -f "$root"/etc/ssh/ssh_host_*
: > "$root/etc/machine-id"
# D-Bus reads the ID through this link (its tmpfiles.d would make it at each boot, and fail
# on the read-only root).
if [ -d "$root/var/lib/dbus" ]; then
    ln -sfn /etc/machine-id "$root/var/lib/dbus/machine-id"
else
    rm -f "$root/var/lib/dbus/machine-id"
fi
ln -sfn ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
mkdir -p "$root/data" "$root/boot/firmware" "$root/var/lib/photo-pacs"
# systemd-update-done would otherwise try to write /etc/.updated at every boot.
usr_ns=$(stat -c %Y "$root/usr")000000000
for d in etc var; do
    printf '# The image was built with /usr as it is.\nTIMESTAMP_NSEC=%s\n' "$usr_ns" > "$root/$d/.updated"
    touch -r "$root/usr" "$root/$d/.updated"
done

# The Pi's firmware (raspi-firmware put it, the device trees and config.txt in
# /boot/firmware) starts Debian's U-Boot, which runs boot.scr: it picks root slot A or B
# and boots that slot's own kernel and initrd (/boot/vmlinuz, /boot/initrd.img) with the
# firmware's device tree and its own command line (read-only root by PARTUUID, the HDMI
# screen and ttyS1; no CMA pool). So the FAT partition holds no kernel: an update replaces
# a whole slot, kernel included, and the FAT is never written at boot.
kernel_version=$(basename "$(ls -d "$root"/lib/modules/*)")
[ -f "$root/boot/vmlinuz-$kernel_version" ] && [ -f "$root/boot/initrd.img-$kernel_version" ] ||
    die "no /boot/vmlinuz-$kernel_version or /boot/initrd.img-$kernel_version in the root file system"
ln -sfn "vmlinuz-$kernel_version" "$root/boot/vmlinuz"
ln -sfn "initrd.img-$kernel_version" "$root/boot/initrd.img"
fw="$root/boot/firmware"
uboot="$root/usr/lib/u-boot/rpi_arm64/u-boot.bin"
[ -f "$uboot" ] || die "no $uboot (u-boot-rpi is in base.sh's list)"
[ -f "$fw/config.txt" ] || die "raspi-firmware made no $fw/config.txt"
rm -f "$fw"/vmlinuz-* "$fw"/initrd.img-* "$fw/cmdline.txt"
cp "$uboot" "$fw/u-boot.bin"
# raspi-firmware's config.txt, with U-Boot as the "kernel" and no initramfs line.
sed -i -e '/^initramfs /d' -e 's/^kernel=.*/kernel=u-boot.bin/' "$fw/config.txt"
grep -qx 'kernel=u-boot.bin' "$fw/config.txt" || die "unexpected config.txt: $(cat "$fw/config.txt")"
mkimage -A arm64 -O linux -T script -C none -n "Photo PACS slot chooser" \
    -d "$here/boot/boot.cmd" "$fw/boot.scr" >/dev/null
cp "$here/photo-pacs.env.template" "$fw/photo-pacs.env"

umount "$root/proc"

# ---- the data partition's first contents ------------------------------------------------
uid=$(chroot "$root" id -u photo-pacs)
gid=$(chroot "$root" id -g photo-pacs)
install -d -m 0700 -o "$uid" -g "$gid" "$data/photo-pacs" "$data/photo-pacs/data"
install -d -m 0755 "$data/etc" "$data/system"
# RAUC's slot status (system.conf data-directory).
install -d -m 0700 "$data/rauc"
install -d -m 0700 "$data/ssh" "$data/tunnel"
# The journal's directory, as systemd's tmpfiles.d makes /var/log/journal.
journal_gid=$(chroot "$root" getent group systemd-journal | cut -d: -f3)
install -d -m 2755 -o 0 -g "$journal_gid" "$data/system/journal"
cp -a "$root/var/lib/systemd" "$data/system/systemd"
find "$root/var/lib/systemd" -mindepth 1 -delete

# ---- file systems and the partition table -------------------------------------------------
step "making the file systems"
mkdir -p "$work/boot"
cp -a "$root/boot/firmware/." "$work/boot/"
find "$root/boot/firmware" -mindepth 1 -delete
# /boot keeps Debian's own copies of the kernel and initrd (what the packages own); the Pi
# and the qemu test both boot the copies on the FAT partition.
rm -f "$work/boot.img"
mkfs.vfat -F 32 -n PPBOOT -C "$work/boot.img" $((boot_mb * 1024)) >/dev/null
mcopy -s -p -i "$work/boot.img" "$work/boot/"* ::/

root_kb=$(du -sk --apparent-size "$root" | cut -f1)
root_mb=$(( root_kb * 125 / 100 / 1024 + 128 ))
[ "$root_mb" -le "$slot_mb" ] || die "the root file system needs $root_mb MiB, more than a slot's $slot_mb MiB (SLOT_MB)"
rm -f "$work/root.img" "$work/data.img"
# errors=remount-ro in the superblock: fstab has no line for / (the two slots are
# found by PARTUUID on the command line, not by label).
mke2fs -q -t ext4 -L PPROOT -m 0 -e remount-ro -d "$root" "$work/root.img" "${root_mb}M"
mke2fs -q -t ext4 -L PPDATA -m 1 -d "$data" "$work/data.img" "${data_mb}M"
# The boot state: slot A first with 3 attempts; slot B is empty until the first update.
printf 'BOOT_ORDER=A B\nBOOT_A_LEFT=3\nBOOT_B_LEFT=0\n' > "$work/boot-state.txt"
mkenvimage -s 0x200 -o "$work/boot-state.bin" "$work/boot-state.txt"

step "assembling $image"
# 4 MiB alignment suits SD cards' erase blocks; the gap before the first partition holds
# the boot state at 1 MiB. MBR, because the Pi's boot ROM reads only that. Slot B is left
# empty (zeros, sparse in the file): the first update writes it.
start=8192
boot_sectors=$((boot_mb * 2048))
slot_sectors=$((slot_mb * 2048))
data_sectors=$((data_mb * 2048))
a_start=$((start + boot_sectors))
b_start=$((a_start + slot_sectors))
data_start=$((b_start + slot_sectors))
total_sectors=$((data_start + data_sectors))
rm -f "$image.partial"
truncate -s $((total_sectors * 512)) "$image.partial"
sfdisk --quiet "$image.partial" <<EOF
label: dos
label-id: $disk_id
unit: sectors
start=$start, size=$boot_sectors, type=c, bootable
start=$a_start, size=$slot_sectors, type=83
start=$b_start, size=$slot_sectors, type=83
start=$data_start, size=$data_sectors, type=83
EOF
dd if="$work/boot-state.bin" of="$image.partial" bs=512 seek=2048 conv=notrunc status=none
dd if="$work/boot.img" of="$image.partial" bs=512 seek=$start conv=notrunc,sparse status=none
dd if="$work/root.img" of="$image.partial" bs=512 seek=$a_start conv=notrunc,sparse status=none
dd if="$work/data.img" of="$image.partial" bs=512 seek=$data_start conv=notrunc,sparse status=none
mv "$image.partial" "$image"
# The root file system alone: what image-build/bundle.sh signs into an update.
mv "$work/root.img" "$rootfs_out"
rm -rf "$work"

size=$(stat -c %s "$image")
elapsed=$(( $(date +%s) - started ))
(cd "$out_dir" && sha256sum "$(basename "$image")" > "$(basename "$image").sha256")
echo "image: $image"
echo "size: $size bytes ($(( size / 1024 / 1024 )) MiB; boot ${boot_mb} MiB, two root slots of ${slot_mb} MiB (root file system ${root_mb} MiB), data ${data_mb} MiB)"
echo "version: $image_version ($compatible)"
echo "root file system for update bundles: $rootfs_out"
echo "kernel: $kernel_version"
echo "built in $elapsed s"
