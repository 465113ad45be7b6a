#!/usr/bin/env bash
# Builds the container image (Containerfile) and checks it under podman, as an admin would
# run it: read-only root, no capabilities, the data in a named volume, the port published on
# loopback only. Then starts compose.yaml's gateway with podman-compose and a .env in the
# Python gateway's style. Prints image sizes, idle memory and start-to-healthy times.
#
#   container/test.sh                  build from source for amd64 and arm64 (the arm64
#                                      runtime stage under qemu-user), check both
#   container/test.sh --arch amd64     one architecture
#   container/test.sh --prebuilt BIN   CI's quick check: BIN, built on this machine, in the
#                                      same runtime stage (Containerfile target `prebuilt`)
#
# Needs root, podman with runc, mmdebstrap, podman-compose, curl and python3; for a foreign
# architecture qemu-user-static with binfmt_misc. Makes the Debian base images when missing
# (container/base-images.sh). Nothing leaves loopback but the package downloads.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

prebuilt=""
archs=()
while [ $# -gt 0 ]; do
    case "$1" in
    --prebuilt) prebuilt="$(realpath "$2")"; shift 2 ;;
    --arch) archs+=("$2"); shift 2 ;;
    *) echo "usage: container/test.sh [--arch amd64|arm64]... [--prebuilt BINARY]" >&2; exit 2 ;;
    esac
done
native="$(dpkg --print-architecture)"
if [ -n "$prebuilt" ]; then
    archs=("$native")
elif [ ${#archs[@]} -eq 0 ]; then
    archs=(amd64 arm64)
fi

for tool in podman runc mmdebstrap podman-compose curl python3 shellcheck; do
    command -v "$tool" >/dev/null || { echo "container/test.sh: $tool is missing" >&2; exit 1; }
done
# Debian's podman 4.3 on this kind of machine: crun cannot run containers (cgroups in hybrid
# mode) and neither runtime may set the default rlimits.
if ! grep -qs '^default_ulimits *= *\[\]' /etc/containers/containers.conf; then
    echo "container/test.sh: /etc/containers/containers.conf needs '[containers]' 'default_ulimits = []'" >&2
    exit 1
fi

failures=0
summary=()
ok() { echo "ok   $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
check() { # check NAME COMMAND...: passes when COMMAND succeeds
    local name=$1; shift
    if "$@"; then ok "$name"; else fail "$name"; fi
}
ms() { date +%s%3N; }

work="$(mktemp -d)"
containers=()
volumes=()
compose_dir=""
cleanup() {
    set +e
    if [ -n "$compose_dir" ]; then
        (cd "$compose_dir" && podman-compose -p pptest down -v >/dev/null 2>&1)
    fi
    for c in "${containers[@]}"; do podman rm -f -t 0 "$c" >/dev/null 2>&1; done
    for v in "${volumes[@]}"; do podman volume rm -f "$v" >/dev/null 2>&1; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Polls the image's health check (podman runs it on a systemd timer, absent here) until it
# passes; prints the milliseconds since $2.
wait_healthy() {
    local name=$1 since=$2 deadline=$((SECONDS + 180))
    until podman healthcheck run "$name" >/dev/null 2>&1; do
        if [ $SECONDS -gt $deadline ] || [ "$(podman inspect -f '{{.State.Running}}' "$name")" != true ]; then
            echo "container $name never became healthy; its log:" >&2
            podman logs "$name" >&2 || true
            return 1
        fi
        sleep 0.1
    done
    echo $(($(ms) - since))
}

json_field() { # json_field PATH: reads JSON on stdin, prints the value at a dotted path
    python3 -c 'import json,sys
v=json.load(sys.stdin)
for k in sys.argv[1].split("."): v=v[k]
print(v)' "$1"
}

# The runtime image for ARCH: from source, or around the prebuilt binary.
build_image() {
    local arch=$1 image=$2 start=$SECONDS
    # The Containerfile names debian:bookworm-slim; point it at this architecture's.
    podman tag "docker.io/library/debian:bookworm-slim-$arch" docker.io/library/debian:bookworm-slim
    if [ -n "$prebuilt" ]; then
        local ctx="$work/ctx" gnu lib missing libs
        mkdir -p "$ctx/out/usr/local/bin" "$ctx/out/etc/ssl/certs"
        cp Containerfile "$ctx/"
        install -m 0755 "$prebuilt" "$ctx/out/usr/local/bin/photo-pacs"
        install -m 0644 /etc/ssl/certs/ca-certificates.crt "$ctx/out/etc/ssl/certs/"
        # The libraries the binary links that the base lacks (libturbojpeg: the image build
        # links it statically, a cargo build here does not).
        gnu="$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -dumpmachine)"
        mapfile -t libs < <(ldd "$prebuilt" | awk '/=> \// { print $3 }')
        missing="$(podman run --rm --network none docker.io/library/debian:bookworm-slim \
            sh -c 'for f; do [ -e "$f" ] || echo "$f"; done' sh "${libs[@]}")"
        for lib in $missing; do
            mkdir -p "$ctx/out/usr/lib/$gnu"
            cp -L "$lib" "$ctx/out/usr/lib/$gnu/$(basename "$lib")"
            echo "   adding $(basename "$lib") beside the prebuilt binary"
        done
        podman build --quiet --format docker --pull=never --target prebuilt -t "$image" "$ctx" >/dev/null 2>>"$work/podman.err" ||
            { cat "$work/podman.err" >&2; echo "the prebuilt image build failed" >&2; exit 1; }
    else
        podman build --format docker --pull=never --platform "linux/$arch" \
            --build-arg "TARGETARCH=$arch" --build-arg "BUILDPLATFORM=linux/$native" \
            --build-arg "COMMIT=$(git rev-parse --short=10 HEAD 2>/dev/null || true)" \
            --secret id=ca-certificates,src=/etc/ssl/certs/ca-certificates.crt \
            -t "$image" . >"$work/build-$arch.log" 2>&1 ||
            { tail -n 60 "$work/build-$arch.log" >&2; echo "the $arch image build failed" >&2; exit 1; }
    fi
    summary+=("$arch: image built in $((SECONDS - start)) s")
}

# Starts a gateway container from IMAGE on VOLUME, published on 127.0.0.1:PORT.
run_gateway() {
    local name=$1 image=$2 volume=$3 port=$4
    podman run -d --name "$name" --read-only --cap-drop=ALL --security-opt=no-new-privileges \
        --stop-timeout 70 -p "127.0.0.1:$port:9470" -v "$volume:/data" "$image" >/dev/null 2>>"$work/podman.err" ||
        { cat "$work/podman.err" >&2; return 1; }
    containers+=("$name")
}

check_image() {
    local arch=$1 image=$2
    local name="pp-test-$arch" volume="pp-test-data-$arch" port started took
    port="$(free_port)"
    local base="http://127.0.0.1:$port"
    echo "== $arch: $image"
    podman volume create "$volume" >/dev/null
    volumes+=("$volume")

    started=$(ms)
    run_gateway "$name" "$image" "$volume" "$port"
    took="$(wait_healthy "$name" "$started")" || { fail "$arch: the container becomes healthy"; return; }
    ok "$arch: healthy (its HEALTHCHECK, photo-pacs health) $took ms after podman run"
    summary+=("$arch: start to healthy $took ms")
    check "$arch: GET /healthz answers ok" \
        test "$(curl -s -m 5 "$base/healthz")" = '{"status":"ok"}'

    # Non-root, no capabilities, nothing writable outside /data.
    local pid
    pid="$(podman inspect -f '{{.State.Pid}}' "$name")"
    check "$arch: the gateway runs as uid 9470" \
        grep -Eq '^Uid:\s+9470\s+9470\s+9470\s+9470$' "/proc/$pid/status"
    check "$arch: with no capabilities" grep -Eq '^CapEff:\s+0+$' "/proc/$pid/status"
    check "$arch: on a read-only root" \
        test "$(podman inspect -f '{{.HostConfig.ReadonlyRootfs}}' "$name")" = true
    if podman exec --user 0 "$name" /bin/sh -c 'touch /usr/local/bin/x' 2>"$work/ro.err"; then
        fail "$arch: even root cannot write the image's files"
    else
        check "$arch: even root cannot write the image's files (read-only file system)" \
            grep -q 'Read-only file system' "$work/ro.err"
    fi

    # An upload in mock mode.
    local code
    code="$(curl -s -o "$work/upload.json" -w '%{http_code}' -m 60 \
        -F patientId=CONTAINER-TEST -F "images[]=@$repo/tests/data/pillow_flower.jpg" "$base/api/studies")"
    check "$arch: an upload in mock mode answers 200 (got $code)" test "$code" = 200

    # A settings change, then podman restart: still there.
    code="$(curl -s -o /dev/null -w '%{http_code}' -m 10 -X PUT -H 'Content-Type: application/json' \
        -d '{"pacsCalledAET":"KEPT_AET"}' "$base/api/settings")"
    check "$arch: a settings change is saved (PUT /api/settings: $code)" test "$code" = 200
    started=$(ms)
    podman restart "$name" >/dev/null 2>>"$work/podman.err"
    wait_healthy "$name" "$started" >/dev/null || { fail "$arch: healthy again after podman restart"; return; }
    check "$arch: the settings change survives podman restart" \
        test "$(curl -s -m 5 "$base/api/settings" | json_field settings.pacsCalledAET)" = KEPT_AET

    # Idle memory, once the restart has settled.
    sleep 5
    local mem rss
    mem="$(podman stats --no-stream --format '{{.MemUsage}}' "$name" | cut -d/ -f1 | xargs)"
    # podman stats counts the cgroup's memory less its page cache; the process's resident
    # set also counts the mapped binary (under qemu-user, the emulator as well).
    rss="$(awk '/^VmRSS:/ { printf "%.1f MB", $2 / 1024 }' "/proc/$(podman inspect -f '{{.State.Pid}}' "$name")/status")"
    summary+=("$arch: idle memory $mem (podman stats), resident $rss")

    # podman stop while an upload is still arriving: the upload completes, the gateway exits 0.
    curl -s -o "$work/slow.json" -w '%{http_code}' -m 90 --limit-rate 6k \
        -F patientId=CONTAINER-DRAIN -F "images[]=@$repo/tests/data/pillow_flower.jpg" \
        "$base/api/studies" >"$work/slow.code" &
    local slow=$!
    sleep 2
    started=$(ms)
    podman stop "$name" >/dev/null 2>>"$work/podman.err"
    local stopped=$(($(ms) - started))
    wait "$slow" || true
    check "$arch: an upload in flight at podman stop completes (got $(cat "$work/slow.code"))" \
        test "$(cat "$work/slow.code")" = 200
    check "$arch: podman stop: the gateway exits 0 after $stopped ms" \
        test "$(podman inspect -f '{{.State.ExitCode}}' "$name")" = 0
    check "$arch: it logged the stop signal" grep -q 'stop signal received' <(podman logs "$name" 2>&1)

    # A new container on the same volume: the settings are still there.
    podman rm "$name" >/dev/null 2>>"$work/podman.err"
    started=$(ms)
    run_gateway "$name" "$image" "$volume" "$port"
    wait_healthy "$name" "$started" >/dev/null || { fail "$arch: a re-created container becomes healthy"; return; }
    check "$arch: the settings change survives a re-created container on the same volume" \
        test "$(curl -s -m 5 "$base/api/settings" | json_field settings.pacsCalledAET)" = KEPT_AET
    podman rm -f -t 0 "$name" >/dev/null 2>>"$work/podman.err"

    # Sizes: as stored, and as a registry would send it (gzip-compressed layers).
    summary+=("$arch: image $(sizes "$image"); of which debian:bookworm-slim $(sizes docker.io/library/debian:bookworm-slim)")
}

# "N MB (M MB compressed)": IMAGE as stored, and as a registry would send it (gzip layers).
sizes() {
    local size packed dir="$work/save"
    size="$(podman image inspect -f '{{.Size}}' "$1")"
    podman save --quiet --compress --format docker-dir -o "$dir" "$1"
    packed="$(du -sb "$dir" | cut -f1)"
    rm -rf "$dir"
    echo "$((size / 1000000)) MB ($((packed / 1000000)) MB compressed)"
}

# Starts compose.yaml's default services in $compose_dir; sets $name to the gateway's
# container and prints the milliseconds until it is healthy.
compose_up() {
    local started
    started=$(ms)
    (cd "$compose_dir" && podman-compose -p pptest up -d >"$work/compose.log" 2>&1) ||
        { cat "$work/compose.log" >&2; return 1; }
    name="$(podman ps -a --filter label=io.podman.compose.project=pptest \
        --filter label=com.docker.compose.service=photo_pacs --format '{{.Names}}' | head -1)"
    [ -n "$name" ] || { cat "$work/compose.log" >&2; return 1; }
    wait_healthy "$name" "$started"
}

# compose.yaml with a .env as the Python gateway's README writes it: the gateway service
# serves the app and the values reach it; the tunnel profile stays off.
check_compose() {
    local image=$1 port name
    port="$(free_port)"
    compose_dir="$work/compose"
    mkdir -p "$compose_dir"
    cp compose.yaml "$compose_dir/"
    cat >"$compose_dir/.env" <<EOF
# C-STORE mode (the Python gateway's README, with this site's values)
PHOTO_PACS_PACS_BACKEND=cstore
PHOTO_PACS_PACS_HOST=localhost      # the PACS server (loopback here: nothing leaves the test)
PHOTO_PACS_PACS_PORT=11112               # PACS DICOM port
PHOTO_PACS_PACS_CALLED_AET=ORTHANC        # the PACS's AE title
PHOTO_PACS_LOCAL_CALLING_AET=CLINIC_CAM
CLOUDFLARE_TUNNEL_TOKEN=
PUBLISH_PORT=127.0.0.1:$port
IMAGE=$image
EOF
    echo "== compose: podman-compose up -d ($(podman-compose version 2>/dev/null | grep -i 'podman-compose version' | head -1))"
    local took
    compose_up >"$work/took" || { fail "compose: podman-compose up, the gateway becomes healthy"; return; }
    took="$(cat "$work/took")"
    ok "compose: $name healthy $took ms after podman-compose up"
    local base="http://127.0.0.1:$port"
    check "compose: the app's page is served" grep -q '<html' <(curl -s -m 5 "$base/")
    check "compose: the gateway runs on a read-only root, in 512 MB" \
        test "$(podman inspect -f '{{.HostConfig.ReadonlyRootfs}} {{.HostConfig.Memory}}' "$name")" = "true 536870912"
    check "compose: as uid 9470 without capabilities" grep -Ezq 'Uid:\s+9470\s.*CapEff:\s+0+\s' \
        "/proc/$(podman inspect -f '{{.State.Pid}}' "$name")/status"
    check "compose: GET /api/settings/info shows the C-STORE backend" \
        test "$(curl -s -m 5 "$base/api/settings/info" | json_field pacsBackend)" = cstore
    curl -s -m 5 "$base/api/settings" >"$work/settings.json"
    local key want
    for pair in pacsHost=localhost pacsPort=11112 pacsCalledAET=ORTHANC localCallingAET=CLINIC_CAM; do
        key=${pair%%=*}
        want=${pair#*=}
        check "compose: GET /api/settings shows $key $want from .env" \
            test "$(json_field "settings.$key" <"$work/settings.json")" = "$want"
    done
    check "compose: the tunnel profile is off (no cloudflared container)" \
        test -z "$(podman ps -a --filter label=io.podman.compose.project=pptest \
            --filter label=com.docker.compose.service=cloudflared --format '{{.Names}}')"
    check "compose: with --profile tunnel the file still parses and names cloudflared" \
        grep -q 'cloudflared' <(cd "$compose_dir" && podman-compose -p pptest --profile tunnel config 2>/dev/null)
    (cd "$compose_dir" && podman-compose -p pptest down -v >/dev/null 2>&1)

    # The repository's .env.example as it is: every name in it is one the gateway knows.
    { cat .env.example; echo "PUBLISH_PORT=127.0.0.1:$port"; echo "IMAGE=$image"; } >"$compose_dir/.env"
    compose_up >/dev/null || { fail "compose: podman-compose up with .env.example, healthy"; return; }
    check "compose: .env.example starts the mock backend" \
        test "$(curl -s -m 5 "$base/api/settings/info" | json_field pacsBackend)" = mock
    podman logs "$name" >"$work/example.log" 2>&1
    if grep -E 'unknown environment variable|not valid' "$work/example.log"; then
        fail "compose: the gateway knows every variable in .env.example"
    else
        ok "compose: the gateway knows every variable in .env.example"
    fi
    (cd "$compose_dir" && podman-compose -p pptest down -v >/dev/null 2>&1)
    compose_dir=""
}

# The Containerfile's RUN scripts as POSIX sh: podman builds OCI images by default (so does
# podman-compose), and those ignore SHELL; a bash-only script fails only there.
lint_containerfile() {
    local dir="$work/run-scripts" n=0 script
    mkdir -p "$dir"
    python3 - Containerfile "$dir" <<'PY'
import re, sys
lines, out = open(sys.argv[1]).read().splitlines(), sys.argv[2]
joined, cur = [], ""
for line in lines:
    if cur and line.lstrip().startswith("#"):
        continue  # a comment inside a continued instruction is dropped, as the engines do
    # Kept with its backslash-newline: the same continuation in sh, and readable lines.
    cur += line + "\n" if line.endswith("\\") else line
    if not line.endswith("\\"):
        joined.append(cur)
        cur = ""
n = 0
for ins in joined:
    m = re.match(r"\s*RUN\s+((?:--(?!\s)[^\s\\]+(?:\s|\\\n)+)*)(.*)", ins, re.S)
    if m:
        n += 1
        open(f"{out}/run-{n}.sh", "w").write("#!/bin/sh\n" + m.group(2) + "\n")
PY
    for script in "$dir"/run-*.sh; do
        n=$((n + 1))
        shellcheck -s sh -S warning "$script" || return 1
    done
    [ "$n" -ge 3 ]
}
check "the Containerfile's RUN scripts are POSIX sh (shellcheck -s sh)" lint_containerfile

started_all=$SECONDS
if [ -n "$prebuilt" ]; then
    container/base-images.sh --runtime-only "${archs[@]}"
else
    container/base-images.sh "${archs[@]}"
fi
for arch in "${archs[@]}"; do
    image="localhost/photo-pacs:test-$arch"
    echo "== $arch: building $image ($([ -n "$prebuilt" ] && echo "prebuilt $prebuilt" || echo 'from source, release'))"
    build_image "$arch" "$image"
    check_image "$arch" "$image"
done
check_compose "localhost/photo-pacs:test-${archs[0]}"

echo "== summary"
for line in "${summary[@]}"; do echo "   $line"; done
echo "   all in $((SECONDS - started_all)) s"
if [ "$failures" -gt 0 ]; then
    echo "container/test.sh: $failures check(s) FAILED" >&2
    exit 1
fi
echo "container/test.sh: all checks passed"
