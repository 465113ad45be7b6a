# shellcheck shell=bash
# Shared by the bench scripts (sourced, not run): installs what a bench needs, builds the
# loopback-only shim for dcmtk's servers, and cleans up the processes it started.

# apt_need PROGRAM-PATH PACKAGE...: installs the Debian packages whose program is missing.
# Pairs are "test-command:package", e.g. "/usr/bin/storescu:dcmtk" or "cc:gcc".
apt_need() {
    local need=() pair prog pkg
    for pair in "$@"; do
        prog=${pair%%:*}
        pkg=${pair#*:}
        if [[ $prog == /* ]]; then [ -x "$prog" ] || need+=("$pkg"); else command -v "$prog" >/dev/null || need+=("$pkg"); fi
    done
    if [ ${#need[@]} -gt 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
}

# loopback_shim: builds tests/peers/loopback_only.c (binds dcmtk's servers to 127.0.0.1)
# and prints its path.
loopback_shim() {
    local shim="$PWD/target/tmp/loopback_only.so"
    mkdir -p target/tmp
    cc -shared -fPIC -O2 -o "$shim" tests/peers/loopback_only.c -ldl
    echo "$shim"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# A scratch folder in $tmp, and the processes in $pids, are gone when the script exits.
tmp="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
