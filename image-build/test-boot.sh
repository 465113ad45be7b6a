#!/usr/bin/env bash
# Boots the SD-card image under qemu-system-aarch64 and checks it as a clinic would use it.
# The Pi itself is not emulated: the `virt` machine runs Debian's qemu_arm64 U-Boot as its
# firmware, which runs the image's boot.scr from the FAT partition as the Pi's U-Boot does:
# it picks the root slot and boots that slot's kernel and initrd. Ports are forwarded on
# 127.0.0.1 only. image-build/test-update.sh tests updates and rollbacks the same way.
#
#   image-build/test-boot.sh [IMAGE]      (default: the newest target/image/*.img)
#
# Boot 0, the image as flashed: ready time, an upload in mock mode, SSH refused, the
#         settings page open and warning that no admin password is set. Then the power is
#         pulled (qemu killed).
# Boot 1, with a first-boot file (called AET, admin password, hostname, SSH key, time zone,
#         NTP servers and one deliberate mistake): the values in effect (the zone and the
#         servers as `timedatectl` reports them), the mistake on the settings page,
#         GET /api/status with the box's facts, / read-only and /data writable, the journal
#         on /data, `systemctl --failed` empty; a settings change through the API, a backup,
#         a second change (time zone too) and a restore of the backup that undoes it; the
#         power pulled. Offline: the file is gone from the FAT partition and no byte of the
#         secret is left in it.
# Boot 2: the settings change and the restore survived (the restored time zone too), the
#         journal kept boot 1's lines, the data partition grew to the end of the bigger
#         "card", nothing failed; a clean `poweroff`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
image="${1:-$(ls -t "$repo"/target/image/photo-pacs-*-arm64.img 2>/dev/null | head -n1)}"
[ -n "$image" ] && [ -f "$image" ] || { echo "test-boot.sh: no image; run image-build/build.sh first" >&2; exit 1; }
for tool in qemu-system-aarch64 mcopy mdir sfdisk curl ssh ssh-keygen python3; do
    command -v "$tool" >/dev/null || { echo "test-boot.sh: missing $tool (apt-get install qemu-system-arm u-boot-qemu mtools fdisk curl openssh-client python3)" >&2; exit 1; }
done
boot_timeout="${BOOT_TIMEOUT:-600}"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -n1)
# What the first-boot file sets for the clock (acceptance 4 of issue 17). The servers need
# not answer: qemu's restrict=on lets the guest reach nothing; timesyncd shows them anyway.
zone=Asia/Taipei
ntp_servers="ntp1.clinic.test 192.0.2.123"

work=$(mktemp -d /tmp/photo-pacs-boot.XXXXXX)
qemu_pid=
cleanup() {
    [ -z "$qemu_pid" ] || kill -9 "$qemu_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
fails=0
pass() { echo "  ok: $*"; }
fail() { echo "  FAIL: $*"; fails=$((fails + 1)); }
check() { local what="$1"; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
not() { ! "$@"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
http_port=$(free_port)
ssh_port=$(free_port)
# As localhost: the gateway takes state-changing requests (an upload, a settings change)
# only under its own names or the address they arrived on (421 WRONG_HOST otherwise), and a
# request forwarded by qemu arrives on the guest's 10.0.2.15, not on the 127.0.0.1 it was
# sent to. localhost is always one of its names.
base="http://localhost:$http_port"

# A copy, 1 GiB bigger than the image: a card larger than the image, as in the field.
disk="$work/disk.img"
cp --sparse=always "$image" "$disk"
truncate -s +1G "$disk"
part_start() { sfdisk -d "$disk" | awk -v p="$disk$1 " 'index($0, p) == 1 { gsub(/[^0-9]/, "", $4); print $4 }'; }
boot_off=$(( $(part_start 1) * 512 ))
fat_sectors() { sfdisk -d "$disk" | awk -v p="${disk}1 " 'index($0, p) == 1 { gsub(/[^0-9]/, "", $6); print $6 }'; }
export MTOOLS_SKIP_CHECK=1
fat="$disk@@$boot_off"

# U-Boot as the virt machine's firmware: boot.scr on the FAT partition does the rest.
uboot=/usr/lib/u-boot/qemu_arm64/u-boot.bin
[ -f "$uboot" ] || { echo "test-boot.sh: no $uboot (apt-get install u-boot-qemu)" >&2; exit 1; }
echo "image: $image ($(stat -c %s "$image") bytes), firmware $uboot"

ssh-keygen -q -t ed25519 -N '' -C boot-test -f "$work/key"
ssh_opts=(-i "$work/key" -p "$ssh_port" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
    -o ConnectTimeout=20 -o BatchMode=yes -o LogLevel=ERROR)
# sshd starts beside the gateway, not before it: on a busy host /healthz can answer while
# sshd is still starting, and qemu's forwarding then resets the connection. ssh's own
# failure (255) is tried again for up to a minute; the command's own status is passed on.
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

power_on() {
    local n="$1"
    echo "== boot $n"
    t0=$(date +%s%N)
    # i6300esb: a hardware watchdog for systemd to keep alive (the Pi has bcm2835_wdt).
    qemu-system-aarch64 -M virt -cpu cortex-a53 -m 1024 -smp 2 -nographic \
        -bios "$uboot" -device i6300esb \
        -drive "file=$disk,format=raw,if=virtio" \
        -netdev "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:$http_port-:9470,hostfwd=tcp:127.0.0.1:$ssh_port-:22" \
        -device virtio-net-pci,netdev=n0,romfile= \
        -serial "file:$work/console-$n.log" -monitor none -display none </dev/null >/dev/null 2>&1 &
    qemu_pid=$!
    local deadline=$(( $(date +%s) + boot_timeout ))
    until curl -fsS -o "$work/healthz" "$base/healthz" 2>/dev/null; do
        if ! kill -0 "$qemu_pid" 2>/dev/null || [ "$(date +%s)" -gt "$deadline" ]; then
            echo "  FAIL: /healthz never answered; console:"; tail -n 40 "$work/console-$n.log"
            exit 1
        fi
        sleep 0.5
    done
    ready_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    echo "  power-on to /healthz: $ready_ms ms (emulated cortex-a53)"
}
# Pulling the plug: no shutdown, no sync.
pull_power() { kill -9 "$qemu_pid"; wait "$qemu_pid" 2>/dev/null || true; qemu_pid=; }

login() {
    curl -fsS -c "$work/cookies" -H 'Content-Type: application/json' \
        -d "{\"password\":\"$1\"}" "$base/api/login" -o /dev/null
}
setting() {
    curl -fsS -b "$work/cookies" "$base/api/settings" |
        python3 -c "import json,sys; print(json.load(sys.stdin)['settings']['$1'])"
}
# Polls `guest CMD` until it prints WANT (helpers apply settings a moment after the API
# answers); prints what it last saw.
guest_becomes() {
    local want="$1" got="" i
    shift
    for i in $(seq 1 60); do
        got=$(guest "$@" 2>&1 || true)
        [ "$got" = "$want" ] && break
        [ "$i" -lt 60 ] && sleep 1
    done
    printf '%s' "$got"
}
# `check`, naming what was found when it is not what was wanted.
check_eq() {
    local what="$1" want="$2" got="$3"
    if [ "$got" = "$want" ]; then pass "$what: $got"; else fail "$what: wanted '$want', got '$got'"; fi
}
time_zone() { guest_becomes "$1" timedatectl show -p Timezone --value; }
ntp_in_effect() { guest_becomes "$1" timedatectl show-timesync -p SystemNTPServers --value; }
# GET /api/status checked with python (ARGS: the expected hostname, zone and servers).
status_facts() {
    curl -sS -b "$work/cookies" -o "$work/status.json" -w '%{http_code}' "$base/api/status" > "$work/status.code" || true
    python3 - "$work/status.json" "$(cat "$work/status.code")" "$version" "$@" <<'PY'
import json, sys
path, code, version, host, zone, servers = sys.argv[1:7]
problems = []
if code != "200":
    print(f"GET /api/status answered HTTP {code}: {open(path, errors='replace').read()[:300]}")
    sys.exit(1)
try:
    s = json.load(open(path))
except ValueError as e:
    print(f"GET /api/status is not JSON ({e})")
    sys.exit(1)
def get(*keys):
    v = s
    for k in keys:
        v = v.get(k) if isinstance(v, dict) else None
    return v
if get("hostname") != host:
    problems.append(f"hostname {get('hostname')!r}, wanted {host!r}")
if get("version") != version:
    problems.append(f"version {get('version')!r}, wanted {version!r}")
free, total = get("data", "freeBytes"), get("data", "totalBytes")
if not (isinstance(free, int) and isinstance(total, int) and 0 < free <= total):
    problems.append(f"data.freeBytes {free!r} / totalBytes {total!r} are not bytes of a partition")
if get("data", "readOnly") is not False:
    problems.append(f"data.readOnly {get('data', 'readOnly')!r}")
if not isinstance(get("uptimeSeconds"), int):
    problems.append(f"uptimeSeconds {get('uptimeSeconds')!r}")
if get("clock", "timeZone") != zone:
    problems.append(f"clock.timeZone {get('clock', 'timeZone')!r}, wanted {zone!r}")
if get("clock", "ntpServers") != servers.split():
    problems.append(f"clock.ntpServers {get('clock', 'ntpServers')!r}, wanted {servers.split()!r}")
if problems:
    print("; ".join(problems))
    sys.exit(1)
print(f"hostname {host}, version {version}, data {free} of {total} bytes free, zone {zone}")
PY
}
# POST /api/restore of FILE with apply=true; checks it applied and names FIELD among its
# changes.
restore() {
    local code
    code=$(curl -sS -b "$work/cookies" -o "$work/restore.json" -w '%{http_code}' \
        -F "file=@$1;type=application/json" -F apply=true "$base/api/restore" || true)
    python3 - "$work/restore.json" "$code" "$2" <<'PY'
import json, sys
path, code, field = sys.argv[1:4]
body = open(path, errors="replace").read()
if code != "200":
    print(f"POST /api/restore answered HTTP {code}: {body[:300]}")
    sys.exit(1)
r = json.loads(body)
changed = [c.get("field") for c in r.get("changes", [])]
if r.get("applied") is not True or field not in changed:
    print(f"applied={r.get('applied')!r}, changes={changed!r} (wanted {field})")
    sys.exit(1)
print(f"applied; changed {', '.join(changed)}")
PY
}
warnings() {
    curl -fsS -b "$work/cookies" "$base/api/settings" |
        python3 -c "import json,sys; print('\n'.join(json.load(sys.stdin)['warnings']))"
}
# Two JPEGs, an upright one and one whose EXIF orientation asks for a turn: at the default
# size limit the gateway decodes both with libjpeg-turbo (libturbojpeg0 on the image).
upload() {
    curl -sS -o "$work/upload.json" -w '%{http_code}' -F patientId=BOOTTEST \
        -F "images[]=@$repo/tests/data/pillow_hopper.jpg" \
        -F "images[]=@$repo/tests/data/pillow_hopper_orientation_6.jpg" "$base/api/studies"
}
upload_stored() {
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); i=d["instances"]; assert len(i) == 2 and all(x["status"] == "success" and x["sopInstanceUID"] for x in i), d' "$work/upload.json"
}
guest_checks() {
    check "photo-pacs.service active (running)" \
        test "$(guest systemctl show -P ActiveState,SubState photo-pacs.service | tr '\n' ' ')" = "active running "
    guest 'touch /write-probe 2>&1; echo "exit $?"' > "$work/ro.out" || true
    check "a write to / fails: $(head -n1 "$work/ro.out")" \
        grep -q 'Read-only file system' "$work/ro.out"
    check "/data is writable" guest 'touch /data/write-probe && rm /data/write-probe'
    guest 'findmnt -no OPTIONS /; findmnt -no OPTIONS /data' > "$work/mounts"
    check "/ is mounted ro, /data rw with noatime ($(tr '\n' ' ' < "$work/mounts"))" \
        sh -c 'sed -n 1p "$1" | grep -q "^ro," && sed -n 2p "$1" | grep -q "^rw,.*noatime"' _ "$work/mounts"
    # Three lines: the mount's source, the journal's directories, the machine ID. One
    # directory, named by the ID: every boot's journal in one place, under one cap.
    guest 'findmnt -no SOURCE /var/log/journal; echo $(ls /var/log/journal); cat /etc/machine-id' > "$work/journal-dir" 2>&1 || true
    check "the journal is on /data, in one directory named by the machine ID ($(tr '\n' ' ' < "$work/journal-dir"))" \
        sh -c 'sed -n 1p "$1" | grep -q "\[/system/journal\]\$" && [ "$(sed -n 2p "$1")" = "$(sed -n 3p "$1")" ] &&
            sed -n 3p "$1" | grep -qx "[0-9a-f]\{32\}"' _ "$work/journal-dir"
    guest 'ldd /usr/bin/photo-pacs' > "$work/ldd.out" 2>&1 || true
    check "every library the gateway links is on the image ($(grep -o 'lib[a-z0-9_-]*\.so[.0-9]*' "$work/ldd.out" | sort -u | tr '\n' ' '))" \
        sh -c 'grep -q "libc.so.6 => /" "$1" && ! grep -q "not found" "$1"' _ "$work/ldd.out"
    check "the running gateway has libjpeg-turbo loaded (libturbojpeg.so.0 in its memory map)" \
        guest 'grep -q /libturbojpeg.so /proc/$(systemctl show -P MainPID photo-pacs.service)/maps'
    local cycles
    cycles=$(guest "journalctl -b -o cat | grep -i 'ordering cycle' | head -n 3" | tr '\n' ' ' || true)
    check "no ordering cycle among the units${cycles:+: $cycles}" test -z "$cycles"
    check "the time request is watched (photo-pacs-time.path active)" \
        test "$(guest systemctl is-active photo-pacs-time.path)" = active
    check "the reboot request is watched (photo-pacs-reboot.path active)" \
        test "$(guest systemctl is-active photo-pacs-reboot.path)" = active
    local failed
    failed=$(guest systemctl --failed --plain --no-legend)
    check "systemctl --failed shows nothing${failed:+: $failed}" test -z "$failed"
}

# ---- boot 0: the image as flashed -----------------------------------------------------------
power_on 0
first_ready_ms=$ready_ms
code=$(upload)
check "upload in mock mode answers 200 ($(head -c 200 "$work/upload.json"))" test "$code" = 200
check "the upload stored both JPEGs (decoded by libjpeg-turbo; one EXIF-turned) in mock mode" upload_stored
ssh_banner() { timeout 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$ssh_port && head -c 4 <&3" 2>/dev/null || true; }
check "SSH is off without a key (no sshd banner)" test -z "$(ssh_banner)"
curl -fsS "$base/api/settings" -o "$work/settings0.json"
check "the settings page is open and warns that no admin password is set" \
    grep -q 'no admin password is set' "$work/settings0.json"
pull_power

# ---- boot 1: with a first-boot file ---------------------------------------------------------
secret="Fb-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
cat > "$work/photo-pacs.env" <<EOF
# written by test-boot.sh
HOSTNAME=ward-7
PHOTO_PACS_PACS_CALLED_AET=FIRSTBOOT_AE
PHOTO_PACS_ADMIN_PASSWORD=$secret
SSH_AUTHORIZED_KEY=$(cat "$work/key.pub")
PHOTO_PACS_PACS_PORT=99999
PHOTO_PACS_TIME_ZONE=$zone
PHOTO_PACS_NTP_SERVERS=$ntp_servers
EOF
mcopy -o -i "$fat" "$work/photo-pacs.env" ::photo-pacs.env
# The control for the check after boot 1: the raw partition does hold the secret now.
check "control: the secret is readable in the raw FAT partition before boot 1" \
    sh -c 'dd if="$1" bs=512 skip="$2" count="$3" status=none | grep -qaF -- "$4"' _ \
    "$disk" $((boot_off / 512)) "$(fat_sectors)" "$secret"
power_on 1
second_ready_ms=$ready_ms
check "the settings need the admin password now" \
    test "$(curl -s -o /dev/null -w '%{http_code}' "$base/api/settings")" = 401
check "the first-boot admin password logs in" login "$secret"
check "the first-boot called AET is in effect" test "$(setting pacsCalledAET)" = FIRSTBOOT_AE
warnings > "$work/warnings1.txt"
check "the file's mistake is on the settings page" grep -q 'line 6: PHOTO_PACS_PACS_PORT' "$work/warnings1.txt"
check "the hostname from the file is set" test "$(guest hostname)" = ward-7
guest journalctl -b -u photo-pacs-provision -o cat > "$work/provision.log"
guest journalctl -b -o cat > "$work/journal1.log"
check "the journal reports the file's problem" \
    grep -q 'problem in the first-boot file: line 6: PHOTO_PACS_PACS_PORT' "$work/provision.log"
check "the secret is in no log line of this boot" not grep -qF -- "$secret" "$work/journal1.log"
# Time: the gateway writes its request at start, photo-pacs-time.path starts the root helper.
check_eq "the first-boot time zone is in effect (timedatectl)" "$zone" "$(time_zone "$zone")"
check_eq "the first-boot NTP servers are timesyncd's (timedatectl show-timesync)" "$ntp_servers" "$(ntp_in_effect "$ntp_servers")"
check "the time helper reported no problem (time-applied.env)" \
    guest 'grep -q "^TIME_ZONE=" /var/lib/photo-pacs/data/time-applied.env && ! grep "^PROBLEM=" /var/lib/photo-pacs/data/time-applied.env'
machine_id1=$(guest cat /etc/machine-id)
if status_line=$(status_facts ward-7 "$zone" "$ntp_servers"); then pass "GET /api/status: $status_line"; else fail "GET /api/status: $status_line"; fi
guest_checks
check "a settings change through the API is saved" \
    curl -fsS -b "$work/cookies" -X PUT -H 'Content-Type: application/json' \
        -d '{"localCallingAET":"SURVIVES_BOOT"}' -o /dev/null "$base/api/settings"
# Backup, change, restore: the restore must put back what the backup holds.
backup_code=$(curl -sS -b "$work/cookies" -H 'Content-Type: application/json' -d '{"includeSecrets":false}' \
    -o "$work/backup.json" -w '%{http_code}' "$base/api/backup" || true)
check "POST /api/backup answers 200 with the settings ($(head -c 120 "$work/backup.json" | tr '\n' ' '))" \
    sh -c 'test "$1" = 200 && grep -q SURVIVES_BOOT "$2"' _ "$backup_code" "$work/backup.json"
check "a second change (called AET back, time zone Europe/Berlin) is saved" \
    curl -fsS -b "$work/cookies" -X PUT -H 'Content-Type: application/json' \
        -d '{"localCallingAET":"BEFORE_RESTORE","timeZone":"Europe/Berlin"}' -o /dev/null "$base/api/settings"
check_eq "a time zone from the settings page is in effect (timedatectl)" Europe/Berlin "$(time_zone Europe/Berlin)"
if restored=$(restore "$work/backup.json" localCallingAET); then pass "POST /api/restore: $restored"; else fail "POST /api/restore: $restored"; fi
check_eq "the restore is in effect (localCallingAET)" SURVIVES_BOOT "$(setting localCallingAET)"
check_eq "the restored time zone is in effect (timedatectl)" "$zone" "$(time_zone "$zone")"
check "/ is read-only again after the time zone changes ($(guest findmnt -no OPTIONS / | cut -d, -f1))" \
    guest 'findmnt -no OPTIONS / | grep -q "^ro,"'
pull_power

echo "== the FAT partition after boot 1 (read from the image file)"
mdir -b -i "$fat" :: > "$work/fat.list"
check "photo-pacs.env is gone from the card" not grep -qix '::/photo-pacs.env' "$work/fat.list"
mcopy -n -i "$fat" ::photo-pacs-applied.env "$work/applied.env"
check "photo-pacs-applied.env blanks the password" grep -qx 'PHOTO_PACS_ADMIN_PASSWORD=' "$work/applied.env"
check "photo-pacs-applied.env lists the problem" grep -q '^# PROBLEM: line 6: PHOTO_PACS_PACS_PORT' "$work/applied.env"
boot_sectors=$(fat_sectors)
dd if="$disk" of="$work/fat.img" bs=512 skip=$((boot_off / 512)) count="$boot_sectors" status=none
check "no copy of the secret is left anywhere in the FAT partition ($((boot_sectors / 2048)) MiB read raw)" \
    not grep -qaF -- "$secret" "$work/fat.img"
rm -f "$work/fat.img"

# ---- boot 2: what survives ------------------------------------------------------------------
power_on 2
login "$secret"
check "the settings change survived the power cut" test "$(setting localCallingAET)" = SURVIVES_BOOT
check "the first-boot values are still in effect" test "$(setting pacsCalledAET)" = FIRSTBOOT_AE
check_eq "the restored time zone survived the power cut (setting timeZone)" "$zone" "$(setting timeZone)"
check_eq "and is in effect (timedatectl)" "$zone" "$(time_zone "$zone")"
check_eq "the NTP servers are in effect again after the reboot" "$ntp_servers" "$(ntp_in_effect "$ntp_servers")"
if status_line=$(status_facts ward-7 "$zone" "$ntp_servers"); then pass "GET /api/status after the reboot: $status_line"; else fail "GET /api/status after the reboot: $status_line"; fi
check_eq "the machine ID is the one of boot 1 (kept at the first boot)" "$machine_id1" "$(guest cat /etc/machine-id)"
guest journalctl -b -1 -u photo-pacs-provision -o cat > "$work/provision-prev.log" 2>&1 || true
check "the journal kept boot 1's lines through the power cut (journalctl -b -1; $(guest journalctl --list-boots --no-pager 2>&1 | grep -cE '[0-9a-f]{32}') boots listed, $(guest journalctl --disk-usage | grep -o '[0-9.]*[KMG]' | head -n1) on disk)" \
    grep -q 'problem in the first-boot file: line 6: PHOTO_PACS_PACS_PORT' "$work/provision-prev.log"
data_mb=$(guest df -BM --output=size /data | tail -n1 | tr -dc 0-9)
check "the data partition grew to the end of the card (${data_mb} MiB)" test "$data_mb" -gt 1000
guest_checks
code=$(upload)
check "an upload after the reboots answers 200" test "$code" = 200
check "and stored both JPEGs" upload_stored
guest systemctl poweroff || true
for _ in $(seq 1 240); do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 0.5; done
if kill -0 "$qemu_pid" 2>/dev/null; then fail "poweroff did not end the VM within 120 s"; else pass "clean poweroff"; qemu_pid=; fi

echo "power-on to ready: boot 0 $first_ready_ms ms, boot 1 $second_ready_ms ms, boot 2 $ready_ms ms (qemu TCG, cortex-a53, 2 vCPU, on this host)"
if [ "$fails" -gt 0 ]; then
    echo "test-boot.sh: $fails check(s) failed" >&2
    exit 1
fi
echo "test-boot.sh: all checks passed"
