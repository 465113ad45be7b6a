#!/usr/bin/env bash
# Tests updates and rollbacks of the SD-card image under qemu-system-aarch64 (`virt`, with
# Debian's qemu_arm64 U-Boot as the firmware running the image's boot.scr, as the Pi's
# U-Boot does). Run by hand, as root (it builds two more versions of the root file system
# with build.sh); about an hour on a 2-core host. Ports on 127.0.0.1 only; the box's PACS is
# a dcmtk storescp on the host, reached through qemu's guestfwd (test/relay.py).
#
#   image-build/test-update.sh [IMAGE]     (default: the newest target/image/*.img)
#
# Environment: PHOTO_PACS_DEB (the arm64 .deb the image was built with: v2 and v3 are
# built from it too; default the newest under target/), KEY_DIR (the development keys
# build.sh used; default target/image/keys), BOOT_TIMEOUT (s, default 600), BUNDLE_DIR
# (keep the bundles there, and take them from there when a run left them: saves about 7
# minutes; they must be newer than the image, so rebuild the image with an older
# IMAGE_VERSION to reuse them).
#
#  1. First boot (slot A, v1) with a first-boot file: healthy and marked good; photos
#     uploaded while the PACS is down stay queued; checksums of /data recorded.
#  2. A tampered bundle, one for another `compatible` and one signed by another CA are
#     refused from the page with a clear message; the boot state is unchanged.
#  3. v2 uploaded and installed from the page, reboot from the page: slot B runs v2, marked
#     good; /data unchanged; with the PACS up the queued photos arrive, each once.
#  4. Power pulled in the middle of an install (into slot A): the box boots slot B (v2);
#     a second install succeeds.
#  7. (run here, before 5) The boot state corrupted offline: the box boots (slot A, the v2
#     just installed), and the state is repaired.
#  5. A bad v3 (its gateway never becomes ready) installed into slot B: three attempts,
#     then the box is back on v2 (slot A) by itself; the page shows the failed update;
#     /data intact; nothing delivered twice.
#  6. Ten power cuts at random moments during boot: the box always comes back healthy, on
#     the same slot and version.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
[ "$(id -u)" -eq 0 ] || { echo "test-update.sh: run as root (it runs build.sh)" >&2; exit 1; }
image="${1:-$(ls -t "$repo"/target/image/photo-pacs-*-arm64.img 2>/dev/null | head -n1)}"
[ -n "$image" ] && [ -f "$image" ] || { echo "test-update.sh: no image; run image-build/build.sh first" >&2; exit 1; }
for tool in qemu-system-aarch64 mcopy sfdisk curl ssh ssh-keygen python3 rauc mksquashfs /usr/bin/storescp; do
    command -v "$tool" >/dev/null || { echo "test-update.sh: missing $tool (apt-get install qemu-system-arm u-boot-qemu mtools fdisk curl openssh-client python3 rauc squashfs-tools dcmtk)" >&2; exit 1; }
done
uboot=/usr/lib/u-boot/qemu_arm64/u-boot.bin
[ -f "$uboot" ] || { echo "test-update.sh: no $uboot (apt-get install u-boot-qemu)" >&2; exit 1; }
deb="${PHOTO_PACS_DEB:-$(ls -t "$repo"/target/cross-*/photo-pacs_*_arm64.deb 2>/dev/null | head -n1)}"
[ -n "$deb" ] && [ -f "$deb" ] || { echo "test-update.sh: no arm64 .deb (PHOTO_PACS_DEB)" >&2; exit 1; }
key_dir="${KEY_DIR:-$repo/target/image/keys}"
[ -f "$key_dir/dev-signing.key.pem" ] || { echo "test-update.sh: no development keys in $key_dir (build.sh makes them)" >&2; exit 1; }
boot_timeout="${BOOT_TIMEOUT:-600}"
started=$(date +%s)

work=$(mktemp -d /var/tmp/photo-pacs-update.XXXXXX)
qemu_pid=
pacs_pid=
cleanup() {
    [ -z "$qemu_pid" ] || kill -9 "$qemu_pid" 2>/dev/null || true
    [ -z "$pacs_pid" ] || kill "$pacs_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
fails=0
pass() { echo "  ok: $*"; }
fail() { echo "  FAIL: $*"; fails=$((fails + 1)); }
check() { local what="$1"; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
check_eq() {
    local what="$1" want="$2" got="$3"
    if [ "$got" = "$want" ]; then pass "$what: $got"; else fail "$what: wanted '$want', got '$got'"; fi
}
elapsed() { echo "$(( $(date +%s) - started )) s"; }

# ---- the versions: v1 is the image; v2 and v3 are built from the same .deb ----------------
v1=$(debugfs -R "cat /etc/photo-pacs-release" "$(ls -t "$repo"/target/image/*.rootfs.ext4 | head -n1)" 2>/dev/null | sed -n 's/^VERSION=//p')
[ -n "$v1" ] || { echo "test-update.sh: cannot read v1's version from the image's rootfs.ext4" >&2; exit 1; }
base_version=${v1%%+*}
bundles="${BUNDLE_DIR:-$work}"
mkdir -p "$bundles"
if [ -s "$bundles/versions" ] && [ -f "$bundles/other-ca.raucb" ]; then
    # shellcheck source=/dev/null
    . "$bundles/versions"
    echo "== reusing the bundles in $bundles (v2 $v2, v3 $v3)"
    reuse=1
else
    v2="$base_version+$(date -u +%Y%m%d%H%M%S -d '+1 minute')"
    v3="$base_version+$(date -u +%Y%m%d%H%M%S -d '+2 minutes')"
    reuse=
fi
dpkg --compare-versions "$v2" gt "$v1" && dpkg --compare-versions "$v3" gt "$v2" ||
    { echo "test-update.sh: v2 ($v2) and v3 ($v3) must be newer than the image's $v1" >&2; exit 1; }
build_version() {
    local name="$1" version="$2" overlay="${3:-}"
    echo "== building $name ($version)${overlay:+ with a test overlay}"
    OUT_DIR="$work/$name" CACHE_DIR="$repo/target/image/cache" KEY_DIR="$key_dir" PHOTO_PACS_DEB="$deb" \
        IMAGE_VERSION="$version" EXTRA_OVERLAY="$overlay" "$here/build.sh" > "$work/build-$name.log" 2>&1 ||
        { tail -n 20 "$work/build-$name.log"; echo "test-update.sh: build.sh failed for $name" >&2; exit 1; }
    grep '^built in' "$work/build-$name.log" | sed "s/^/  $name: /"
    rm -f "$work/$name"/*.img
    KEY_DIR="$key_dir" "$here/bundle.sh" "$work/$name"/*.rootfs.ext4 "$bundles/$name.raucb" 2>/dev/null | sed 's/^/  /'
    rm -f "$work/$name"/*.rootfs.ext4
}
if [ -z "$reuse" ]; then
build_version v2 "$v2"
# v3's gateway never tells systemd it is ready: the service times out and restarts, and
# the box never answers /healthz.
mkdir -p "$work/v3-overlay/etc/systemd/system/photo-pacs.service.d"
printf '[Service]\nExecStart=\nExecStart=/bin/sleep infinity\n' \
    > "$work/v3-overlay/etc/systemd/system/photo-pacs.service.d/zz-test-never-ready.conf"
build_version v3 "$v3" "$work/v3-overlay"
# The bad bundles: v2 for another image, v2 with one payload byte flipped, and v2 signed by
# a CA the image does not trust.
echo "== making the bundles the box must refuse"
mkdir -p "$work/other-keys"
"$here/dev-keys.sh" "$work/other-keys" >/dev/null
debugfs_rootfs="$work/v2-rootfs.ext4"
# bundle.sh needs the root file system again: extract it from the v2 bundle.
rauc extract --keyring="$key_dir/dev-ca.cert.pem" "$bundles/v2.raucb" "$work/v2-extracted" >/dev/null 2>&1
cp --sparse=always "$work/v2-extracted/rootfs.ext4" "$debugfs_rootfs"
rm -rf "$work/v2-extracted"
COMPATIBLE=photo-pacs-other-board KEY_DIR="$key_dir" "$here/bundle.sh" "$debugfs_rootfs" "$bundles/wrong-compatible.raucb" 2>/dev/null | sed 's/^/  /'
RAUC_CERT="$work/other-keys/dev-signing.cert.pem" RAUC_KEY="$work/other-keys/dev-signing.key.pem" \
    RAUC_KEYRING="$work/other-keys/dev-ca.cert.pem" "$here/bundle.sh" "$debugfs_rootfs" "$bundles/other-ca.raucb" 2>/dev/null | sed 's/^/  /'
rm -f "$debugfs_rootfs"
cp "$bundles/v2.raucb" "$bundles/tampered.raucb"
size=$(stat -c %s "$bundles/tampered.raucb")
# A byte in the middle of the squashfs payload, inverted.
python3 - "$bundles/tampered.raucb" $((size / 2)) <<'PY'
import sys
path, at = sys.argv[1], int(sys.argv[2])
with open(path, "r+b") as f:
    f.seek(at)
    b = f.read(1)
    f.seek(at)
    f.write(bytes([b[0] ^ 0xFF]))
PY
echo "  tampered: byte $((size / 2)) of v2.raucb inverted"
printf 'v2=%s\nv3=%s\n' "$v2" "$v3" > "$bundles/versions"
fi

# ---- the VM ----------------------------------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
http_port=$(free_port)
ssh_port=$(free_port)
pacs_port=$(free_port)
base="http://localhost:$http_port"
disk="$work/disk.img"
cp --sparse=always "$image" "$disk"
# A card with room for bundles on /data (the data partition grows at the first boot).
truncate -s +6G "$disk"
boot_off=$(( $(sfdisk -d "$disk" | awk -v p="${disk}1 " 'index($0, p) == 1 { gsub(/[^0-9]/, "", $4); print $4 }') * 512 ))
export MTOOLS_SKIP_CHECK=1
fat="$disk@@$boot_off"

ssh-keygen -q -t ed25519 -N '' -C update-test -f "$work/key"
ssh_opts=(-i "$work/key" -p "$ssh_port" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
    -o ConnectTimeout=20 -o BatchMode=yes -o LogLevel=ERROR)
guest() {
    local rc
    for _ in $(seq 20); do
        rc=0
        ssh "${ssh_opts[@]}" root@127.0.0.1 "$@" || rc=$?
        [ "$rc" -eq 255 ] || return "$rc"
        sleep 3
    done
    return 255
}
boots=0
power_on() {
    local wait="${1:-wait}"
    boots=$((boots + 1))
    console="$work/console-$boots.log"
    qemu-system-aarch64 -M virt -cpu cortex-a53 -m 1024 -smp 2 -nographic \
        -bios "$uboot" -device i6300esb \
        -drive "file=$disk,format=raw,if=virtio" \
        -netdev "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:$http_port-:9470,hostfwd=tcp:127.0.0.1:$ssh_port-:22,guestfwd=tcp:10.0.2.100:11112-cmd:python3 $here/test/relay.py 127.0.0.1 $pacs_port" \
        -device virtio-net-pci,netdev=n0,romfile= \
        -serial "file:$console" -monitor none -display none </dev/null >/dev/null 2>&1 &
    qemu_pid=$!
    t0=$(date +%s)
    [ "$wait" = wait ] || return 0
    wait_healthy
}
# Waits for /healthz; the console's last lines and exit when the box never answers.
wait_healthy() {
    local deadline=$(( $(date +%s) + ${1:-$boot_timeout} ))
    until curl -fsS -o /dev/null --max-time 5 "$base/healthz" 2>/dev/null; do
        if ! kill -0 "$qemu_pid" 2>/dev/null || [ "$(date +%s)" -gt "$deadline" ]; then
            echo "  FAIL: /healthz never answered; console:"; tail -n 40 "$console"
            exit 1
        fi
        sleep 1
    done
    echo "  healthy $(( $(date +%s) - t0 )) s after power-on (boot $boots, $(elapsed) into the test)"
}
pull_power() { kill -9 "$qemu_pid"; wait "$qemu_pid" 2>/dev/null || true; qemu_pid=; }
# Waits until the box stops answering (a reboot has begun).
wait_down() {
    local deadline=$(( $(date +%s) + ${1:-300} ))
    while curl -fsS -o /dev/null --max-time 5 "$base/healthz" 2>/dev/null; do
        [ "$(date +%s)" -le "$deadline" ] || return 1
        sleep 1
    done
}
pacs_up() {
    mkdir -p "$work/pacs"
    /usr/bin/storescp -od "$work/pacs" -aet PACS "$pacs_port" > "$work/storescp.log" 2>&1 &
    pacs_pid=$!
    sleep 1
}
delivered() { find "$work/pacs" -type f 2>/dev/null | wc -l; }

login() {
    curl -fsS -c "$work/cookies" -H 'Content-Type: application/json' \
        -d "{\"password\":\"$admin\"}" "$base/api/login" -o /dev/null
}
# GET /api/update, one value by a dotted path (python: d["a"]["b"]); "" when absent.
update_field() {
    curl -fsS -b "$work/cookies" "$base/api/update" -o "$work/update.json" 2>/dev/null || { echo ""; return; }
    python3 - "$work/update.json" "$1" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    if isinstance(v, list):
        v = v[int(k)] if k.isdigit() and int(k) < len(v) else None
    elif isinstance(v, dict):
        v = v.get(k)
    else:
        v = None
print("" if v is None else (json.dumps(v) if isinstance(v, (dict, list, bool)) else v))
PY
}
upload_bundle() {
    curl -sS -b "$work/cookies" -o "$work/bundle.json" -w '%{http_code}' \
        -F "file=@$1;type=application/octet-stream" "$base/api/update/bundle" || true
}
# Installs the pending bundle from the page (wait_install then waits for RAUC to finish).
install_pending() {
    local code
    result_before=$(update_field lastResult.at)
    code=$(curl -sS -b "$work/cookies" -X POST -o "$work/install.json" -w '%{http_code}' "$base/api/update/install" || true)
    [ "$code" = 200 ] || [ "$code" = 202 ] || { echo "POST /api/update/install answered $code: $(head -c 300 "$work/install.json")"; return 1; }
    return 0
}
# Prints "installed" (RAUC wrote the slot; the page now asks for a reboot) or the failure.
wait_install() {
    local deadline=$(( $(date +%s) + 1800 )) op p last=""
    while [ "$(date +%s)" -le "$deadline" ]; do
        op=$(update_field operation)
        p=$(update_field progress.percent)
        [ "$p" = "$last" ] || { echo "    progress $p% $(update_field progress.message)" >&2; last="$p"; }
        if [ "$op" = idle ]; then
            if [ "$(update_field awaitingReboot)" = true ]; then
                echo installed
                return 0
            fi
            # A failure is recorded as a new last result (the last one may be older).
            if [ "$(update_field lastResult.at)" != "$result_before" ]; then
                echo "$(update_field lastResult.kind): $(update_field lastError)"
                return 0
            fi
        fi
        sleep 3
    done
    echo "no end within 30 min"
}
reboot_from_page() {
    curl -fsS -b "$work/cookies" -H 'Content-Type: application/json' -d '{"at":"now"}' \
        -o "$work/reboot.json" "$base/api/update/reboot"
}
booted_slot() { guest "sed -n 's/.*rauc\.slot=\([AB]\).*/\1/p' /proc/cmdline"; }
running_version() { guest "sed -n 's/^VERSION=//p' /etc/photo-pacs-release"; }
boot_state() { guest 'fw_printenv 2>&1 | sort | tr "\n" " "'; }
# Waits (up to 6 min) for the boot check to mark the booted slot good.
marked_good() {
    local slot="$1"
    for _ in $(seq 1 72); do
        [ "$(guest fw_printenv -n PP_GOOD 2>/dev/null)" = "$slot" ] &&
            [ "$(guest fw_printenv -n "BOOT_${slot}_LEFT" 2>/dev/null)" = 3 ] && return 0
        sleep 5
    done
    return 1
}
# What must survive every update and rollback: settings, the admin password, the queued
# studies' records and DICOM files, the first-boot results, SSH keys. Delivery states
# (state.json) change as the outbox retries; bundles come and go.
data_sums() {
    guest 'cd /data && find photo-pacs etc ssh -type f ! -name state.json ! -name "*.lock" ! -path "*/updates/*" \
        ! -name time-applied.env ! -path "*/tmp/*" -print0 | sort -z | xargs -0 sha256sum' > "$1"
}
# As a check's command: the file count is already in the check's text.
same_data_quiet() { same_data > /dev/null; }
same_data() {
    data_sums "$work/sums-now"
    if diff -q "$work/sums-1" "$work/sums-now" >/dev/null; then
        echo "$(wc -l < "$work/sums-1") files"
        return 0
    fi
    diff "$work/sums-1" "$work/sums-now" | head -n 10
    return 1
}

# ---- 1. first boot, slot A, v1 ---------------------------------------------------------------
echo "== 1. first boot: slot A, $v1"
admin="Up-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
cat > "$work/photo-pacs.env" <<EOF
# written by test-update.sh
HOSTNAME=ward-update
PHOTO_PACS_ADMIN_PASSWORD=$admin
SSH_AUTHORIZED_KEY=$(cat "$work/key.pub")
PHOTO_PACS_PACS_BACKEND=cstore
PHOTO_PACS_PACS_HOST=10.0.2.100
PHOTO_PACS_PACS_PORT=11112
PHOTO_PACS_PACS_CALLED_AET=PACS
PHOTO_PACS_PACS_TIMEOUT_S=5
EOF
mcopy -o -i "$fat" "$work/photo-pacs.env" ::photo-pacs.env
power_on
login
check_eq "booted slot" A "$(booted_slot)"
check_eq "running version" "$v1" "$(running_version)"
check "slot A marked good by the boot check (PP_GOOD=A, BOOT_A_LEFT=3): $(boot_state)" marked_good A
check "the hardware watchdog is in use (systemd: $(guest "journalctl -b -o cat | grep -m1 -i 'hardware watchdog'" || true))" \
    guest "journalctl -b -o cat | grep -qi 'hardware watchdog'"
queued=0
for n in 1 2 3; do
    code=$(curl -sS -o "$work/upload.json" -w '%{http_code}' -F "patientId=UPD$n" \
        -F "images[]=@$repo/tests/data/pillow_hopper.jpg" "$base/api/studies" || true)
    if [ "$code" = 202 ]; then queued=$((queued + 1)); fi
done
check_eq "photos uploaded while the PACS is down are queued (HTTP 202)" 3 "$queued"
data_sums "$work/sums-1"
check "checksums of /data recorded ($(wc -l < "$work/sums-1") files)" test -s "$work/sums-1"
state_1=$(boot_state)

# ---- 2. bundles the box must refuse ------------------------------------------------------------
echo "== 2. refused bundles"
for bad in tampered:UPDATE_INVALID wrong-compatible:UPDATE_INCOMPATIBLE other-ca:UPDATE_INVALID; do
    file=${bad%%:*}
    want=${bad#*:}
    code=$(upload_bundle "$bundles/$file.raucb")
    body=$(head -c 400 "$work/bundle.json")
    check "the $file bundle is refused from the page: HTTP $code, $body" \
        sh -c 'test "$1" = 422 && grep -q "\"$2\"" "$3"' _ "$code" "$want" "$work/bundle.json"
done
check_eq "the boot state is unchanged" "$state_1" "$(boot_state)"
check_eq "nothing is pending" "" "$(update_field pending.version)"

# ---- 3. v2 from the page ------------------------------------------------------------------------
echo "== 3. v2 ($v2) from the page"
code=$(upload_bundle "$bundles/v2.raucb")
check "v2 uploaded: HTTP $code, version $(update_field pending.version), signer $(update_field pending.signer)" \
    sh -c 'case "$1" in 200|201) ;; *) exit 1 ;; esac && test "$2" = "$3"' _ "$code" "$(update_field pending.version)" "$v2"
t_install=$(date +%s)
check "the install starts" install_pending
outcome=$(wait_install)
check_eq "the install finishes" installed "$outcome"
echo "  installed in $(( $(date +%s) - t_install )) s"
check "the page asks for a reboot" reboot_from_page
check "the box goes down for the reboot" wait_down 300
t0=$(date +%s)
wait_healthy
# Sessions end with the boot.
login
check_eq "booted slot after the update" B "$(booted_slot)"
check_eq "running version" "$v2" "$(running_version)"
check "slot B marked good: $(boot_state)" marked_good B
check_eq "the page shows slot B running v2" "B $v2" "$(update_field bootedSlot) $(update_field version)"
# The gateway says "installed" only once the new slot has been marked good.
result_becomes() {
    for _ in $(seq 1 36); do
        [ "$(update_field lastResult.kind)" = "$1" ] && break
        sleep 5
    done
    update_field lastResult.kind
}
check_eq "the page reports the update installed" installed "$(result_becomes installed)"
check "/data is unchanged ($(same_data))" same_data_quiet
check_eq "nothing was delivered while the PACS was down" 0 "$(delivered)"
pacs_up
for _ in $(seq 1 60); do [ "$(delivered)" -ge 3 ] && break; sleep 5; done
sleep 20
check_eq "with the PACS up, the queued photos arrive, each once" 3 "$(delivered)"
# A delivered study's DICOM files are deleted (its record stays): the baseline for the
# rest of the test is /data now, and only those files may differ from the first one.
data_sums "$work/sums-2"
delivered_only() {
    local removed added
    removed=$(diff "$work/sums-1" "$work/sums-2" | sed -n 's/^< //p')
    added=$(diff "$work/sums-1" "$work/sums-2" | sed -n 's/^> //p')
    [ -z "$added" ] && [ -n "$removed" ] && ! printf '%s\n' "$removed" | grep -qv '\.dcm$'
}
check "after delivery only the delivered DICOM files left /data ($(diff "$work/sums-1" "$work/sums-2" | grep -c '^<' || true) removed, $(diff "$work/sums-1" "$work/sums-2" | grep -c '^>' || true) added)" delivered_only
cp "$work/sums-2" "$work/sums-1"

# ---- 4. power pulled during an install ------------------------------------------------------------
echo "== 4. power pulled in the middle of an install into slot A"
code=$(upload_bundle "$bundles/v2.raucb")
check "v2 uploaded again for slot A: HTTP $code" sh -c 'case "$1" in 200|201) exit 0 ;; *) exit 1 ;; esac' _ "$code"
check "the install starts" install_pending
cut_at=""
for _ in $(seq 1 600); do
    p=$(update_field progress.percent)
    if [ -n "$p" ] && [ "$p" -ge 40 ] 2>/dev/null && [ "$p" -lt 100 ]; then cut_at="$p"; break; fi
    sleep 1
done
pull_power
check "the power was pulled mid-install (at $cut_at%)" test -n "$cut_at"
power_on
check_eq "the box boots the old slot" B "$(booted_slot)"
check_eq "running version" "$v2" "$(running_version)"
login
echo "  boot state: $(boot_state)"
if [ -z "$(update_field pending.version)" ]; then upload_bundle "$bundles/v2.raucb" >/dev/null; fi
check "a second install starts" install_pending
outcome=$(wait_install)
check_eq "and succeeds" installed "$outcome"
echo "  boot state after the second install: $(boot_state)"
pull_power

# ---- 7. the boot state corrupted offline ------------------------------------------------------------
echo "== 7. the boot state corrupted offline"
dd if=/dev/urandom of="$disk" bs=512 seek=2048 count=32 conv=notrunc status=none
power_on
check "U-Boot saw the corrupt state and used the default" grep -aq 'boot state missing or corrupt' "$console"
slot=$(booted_slot)
check_eq "the box booted slot A (the default's first; the v2 installed in 4)" A "$slot"
check_eq "running version" "$v2" "$(running_version)"
check "the state is repaired and slot A marked good: $(boot_state)" marked_good A
login

# ---- 5. a bad v3 rolls back by itself ---------------------------------------------------------------
echo "== 5. a bad v3 ($v3) into slot B"
code=$(upload_bundle "$bundles/v3.raucb")
check "v3 uploaded: HTTP $code" sh -c 'case "$1" in 200|201) exit 0 ;; *) exit 1 ;; esac' _ "$code"
check "the install starts" install_pending
outcome=$(wait_install)
check_eq "and finishes" installed "$outcome"
delivered_before=$(delivered)
check "the page asks for a reboot" reboot_from_page
check "the box goes down for the reboot" wait_down 300
t0=$(date +%s)
# Three attempts of slot B (each ends in the boot check's reboot), then slot A.
wait_healthy 3600
attempts=$(grep -ac 'Photo PACS: slot B;' "$console" || true)
check_eq "slot B was tried three times (boot.scr's lines on the console)" 3 "$attempts"
check_eq "the box is back on slot A by itself" A "$(booted_slot)"
check_eq "running version" "$v2" "$(running_version)"
check "slot A is (still) good: $(boot_state)" marked_good A
login
check_eq "the page shows the failed update ($(update_field lastResult))" rolledBack "$(result_becomes rolledBack)"
check "/data is intact ($(same_data))" same_data_quiet
check_eq "nothing was delivered twice" "$delivered_before" "$(delivered)"

# ---- 6. ten power cuts during boot ----------------------------------------------------------------
echo "== 6. ten power cuts at random moments during boot"
# The box from 5 is still running: power it off first.
pull_power
cuts=""
for _ in $(seq 1 10); do
    at=$(( RANDOM % 110 + 2 ))
    power_on nowait
    sleep "$at"
    pull_power
    cuts="$cuts $at"
done
echo "  cut after:$cuts s"
power_on
failed_console=$(grep -a 'FAILED' "$console" | head -n 5 || true)
check "no unit failed while it booted (console)${failed_console:+: $failed_console}" test -z "$failed_console"
check_eq "the box came back on slot A" A "$(booted_slot)"
check_eq "running version" "$v2" "$(running_version)"
check "slot A is good: $(boot_state)" marked_good A
check "/data is intact ($(same_data))" same_data_quiet
login
check_eq "nothing was delivered twice" "$delivered_before" "$(delivered)"
failed=$(guest systemctl --failed --plain --no-legend || true)
check "systemctl --failed shows nothing${failed:+: $failed}" test -z "$failed"
guest systemctl poweroff || true
for _ in $(seq 1 240); do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 0.5; done
kill -0 "$qemu_pid" 2>/dev/null && pull_power || qemu_pid=

echo "$boots power-ons in $(elapsed) (qemu TCG, cortex-a53, 2 vCPU, on this host)"
if [ "$fails" -gt 0 ]; then
    # The journal is on the data partition: read it offline, as SSH may be what failed.
    keep=$(mktemp -d /var/tmp/photo-pacs-update-journal.XXXXXX)
    data_start=$(sfdisk -d "$disk" | awk -v p="${disk}4 " 'index($0, p) == 1 { gsub(/[^0-9]/, "", $4); print $4 }')
    dd if="$disk" of="$work/data.ext4" bs=512 skip="$data_start" conv=sparse status=none
    debugfs -R "rdump /system/journal $keep" "$work/data.ext4" >/dev/null 2>&1 || true
    cp "$work"/console-*.log "$keep/" 2>/dev/null || true
    echo "the journal and the consoles are kept in $keep; the last boot's errors:"
    journalctl -D "$keep/journal" -b 0 -p err --no-pager -o short-monotonic 2>/dev/null | tail -n 40 || true
    echo "test-update.sh: $fails check(s) failed" >&2
    exit 1
fi
echo "test-update.sh: all checks passed"
