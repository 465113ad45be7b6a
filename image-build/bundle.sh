#!/usr/bin/env bash
# Makes a signed RAUC update bundle (.raucb, verity format) from the root file system that
# build.sh made: a box running an image of the same `compatible` installs it into its
# other root slot (settings page, or `photo-pacs update FILE`). See image-build/README.md,
# "Updates" and "Signing keys".
#
#   image-build/bundle.sh [ROOTFS.ext4] [OUT.raucb]
#
# Defaults: the newest target/image/*.rootfs.ext4, and target/image/photo-pacs-<version>.raucb.
# Environment:
#   RAUC_CERT   the signing certificate: a PEM file or a PKCS#11 URI ('pkcs11:token=...')
#   RAUC_KEY    its private key: a PEM file or a PKCS#11 URI (the key never leaves the token;
#               RAUC_PKCS11_MODULE names the module, e.g. the token vendor's .so)
#               Without both, the development keys in KEY_DIR (default target/image/keys)
#               are used, with a warning.
#   RAUC_KEYRING  the CA to check the new bundle against before it is handed out (default:
#               KEY_DIR's dev CA when the development keys sign, else none)
#   COMPATIBLE  override the compatible read from the root file system (tests only)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
die() { echo "bundle.sh: $*" >&2; exit 1; }
for tool in rauc mksquashfs debugfs; do
    command -v "$tool" >/dev/null 2>&1 || die "missing $tool; on Debian 12: apt-get install rauc squashfs-tools e2fsprogs"
done
rootfs="${1:-$(ls -t "$repo"/target/image/*.rootfs.ext4 2>/dev/null | head -n1)}"
[ -n "$rootfs" ] && [ -f "$rootfs" ] || die "no root file system; run image-build/build.sh first"
# What the root file system says it is (build.sh wrote it).
release=$(debugfs -R "cat /etc/photo-pacs-release" "$rootfs" 2>/dev/null) ||
    die "$rootfs: cannot read /etc/photo-pacs-release"
version=$(printf '%s\n' "$release" | sed -n 's/^VERSION=//p' | head -n1)
compatible="${COMPATIBLE:-$(printf '%s\n' "$release" | sed -n 's/^COMPATIBLE=//p' | head -n1)}"
[ -n "$version" ] && [ -n "$compatible" ] || die "$rootfs: /etc/photo-pacs-release lacks VERSION or COMPATIBLE"
out="${2:-$(dirname "$rootfs")/photo-pacs-$version.raucb}"

key_dir="${KEY_DIR:-$repo/target/image/keys}"
cert="${RAUC_CERT:-}"
key="${RAUC_KEY:-}"
keyring="${RAUC_KEYRING:-}"
if [ -z "$cert" ] || [ -z "$key" ]; then
    [ -f "$key_dir/dev-signing.key.pem" ] || die "no RAUC_CERT/RAUC_KEY and no development keys in $key_dir (build.sh makes them)"
    cert="$key_dir/dev-signing.cert.pem"
    key="$key_dir/dev-signing.key.pem"
    keyring="${keyring:-$key_dir/dev-ca.cert.pem}"
    echo "bundle.sh: WARNING: signing with the development keys in $key_dir" >&2
fi

work=$(mktemp -d /tmp/photo-pacs-bundle.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/content"
# A hard link where possible: the root file system is about a gigabyte.
ln "$rootfs" "$work/content/rootfs.ext4" 2>/dev/null || cp --sparse=always "$rootfs" "$work/content/rootfs.ext4"
cat > "$work/content/manifest.raucm" <<MANIFEST
[update]
compatible=$compatible
version=$version
description=Photo PACS root file system
build=$(date -u +%Y-%m-%dT%H:%M:%SZ)

[bundle]
format=verity

[image.rootfs]
filename=rootfs.ext4
MANIFEST
rm -f "$out"
args=(--cert="$cert" --key="$key")
[ -z "$keyring" ] || args+=(--keyring="$keyring")
rauc "${args[@]}" bundle "$work/content" "$out" >/dev/null
if [ -n "$keyring" ]; then
    rauc info --keyring="$keyring" "$out" >/dev/null || die "the new bundle does not verify against $keyring"
fi
echo "bundle: $out ($(stat -c %s "$out") bytes; version $version, compatible $compatible)"
