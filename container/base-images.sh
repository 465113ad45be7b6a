#!/usr/bin/env bash
# Makes the Debian base images the Containerfile names, where no registry can be reached:
# docker.io/library/debian:bookworm (the build stage, this machine's architecture) and
# docker.io/library/debian:bookworm-slim for each architecture asked for, from Debian's own
# packages with mmdebstrap (as Debian's official images are made: minbase, merged /usr, and
# for -slim no documentation, manual pages or translations). An image already present is
# kept. Each architecture's slim image is also tagged bookworm-slim-<arch>, so that
# container/test.sh can point bookworm-slim at the one it is building for.
#
#   container/base-images.sh [--runtime-only] [amd64] [arm64]
#                    (default: this machine's architecture; --runtime-only: no build base)
#
# Foreign architectures run their package scripts under qemu-user (qemu-user-static and
# binfmt_misc). Needs root, mmdebstrap and podman.
set -euo pipefail

mirror=http://deb.debian.org/debian
security=http://deb.debian.org/debian-security
native="$(dpkg --print-architecture)"
build_base=yes
if [ "${1:-}" = --runtime-only ]; then
    build_base=no
    shift
fi
[ $# -gt 0 ] || set -- "$native"

have() { podman image exists "$1"; }

# make VARIANT ARCH NAME: bootstrap into a tar file, import it under NAME.
make() {
    local variant=$1 arch=$2 name=$3 tar opts=()
    if [ "$variant" = slim ]; then
        local p
        for p in '/usr/share/doc/*' '/usr/share/man/*' '/usr/share/info/*' '/usr/share/locale/*' \
            '/usr/share/lintian/*' '/usr/share/linda/*'; do
            opts+=(--dpkgopt="path-exclude=$p")
        done
        opts+=(--dpkgopt='path-include=/usr/share/doc/*/copyright'
            --dpkgopt='path-include=/usr/share/locale/locale.alias')
    fi
    tar="$(mktemp --suffix=.tar)"
    echo "== base image $name ($arch, mmdebstrap minbase${variant:+, $variant})"
    local start=$SECONDS
    # merged-usr hook: a merged /usr without the usrmerge package (and the perl it pulls in).
    # Its merged-usr hook is chatty: the log is shown only when something fails.
    local log
    log="$(mktemp)"
    mmdebstrap --quiet --variant=minbase --architectures="$arch" \
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr "${opts[@]}" \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/log/*.log "$1"/var/cache/ldconfig/aux-cache' \
        bookworm "$tar" \
        "deb $mirror bookworm main" "deb $mirror bookworm-updates main" "deb $security bookworm-security main" \
        >"$log" 2>&1 || { cat "$log" >&2; rm -f "$log" "$tar"; echo "mmdebstrap failed for $name" >&2; exit 1; }
    rm -f "$log"
    podman import --quiet --arch "$arch" \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' "$tar" "$name" >/dev/null
    rm -f "$tar"
    echo "   $name: $((SECONDS - start)) s"
}

if [ "$build_base" = yes ]; then
    have docker.io/library/debian:bookworm || make "" "$native" docker.io/library/debian:bookworm
fi
for arch in "$@"; do
    have "docker.io/library/debian:bookworm-slim-$arch" ||
        make slim "$arch" "docker.io/library/debian:bookworm-slim-$arch"
done
