#!/usr/bin/env bash
# C-STORE throughput: 100 pre-built Secondary Capture objects (1008x756 RGB, about 2.3 MB
# each, made by `photo-pacs convert` from the 12 MP bench photo) sent in one association
# to dcmtk's storescp on loopback, by us (`photo-pacs send`) and by dcmtk's `storescu`,
# side by side in one run. Both clients run with TCP_NODELAY; the peer runs twice, with
# Nagle off (TCP_NODELAY=1) and with dcmtk's default (Nagle on). Median of $RUNS runs.
#
#   bench/cstore.sh            RUNS=9 COUNT=100 bench/cstore.sh
#
# storescp cannot choose its listen address, so it runs with the tests' LD_PRELOAD shim
# (tests/peers/loopback_only.c) that binds it to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${RUNS:-5}"
count="${COUNT:-100}"

# shellcheck source=bench/lib.sh
source bench/lib.sh
apt_need "/usr/bin/storescu:dcmtk" "hyperfine:hyperfine" "cc:gcc"
bench/make-photos.sh target/bench-photos >/dev/null
cargo build --release --quiet
ours="$PWD/target/release/photo-pacs"
shim="$(loopback_shim)"


# The objects: one conversion, then copies with their own SOP Instance UIDs would need
# rewriting; converting the photo $count times gives real distinct objects instead.
mkdir "$tmp/objects"
photos=()
for ((i = 0; i < count; i++)); do photos+=(target/bench-photos/phone-12mp.jpg); done
"$ours" convert --patient-id BENCH --out "$tmp/objects" "${photos[@]}" >/dev/null
mapfile -t files < <(ls "$tmp/objects"/*.dcm)
bytes=$(du -cb "${files[@]}" | tail -n 1 | cut -f1)

median_ms() {
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; print(" ".join("%.0f" % (x["median"]*1000) for x in r))' "$1"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "objects: ${#files[@]} files, $((bytes / 1024 / 1024)) MiB; runs per command: $runs"
echo
printf '| %-22s | %12s | %15s | %11s |\n' "storescp (peer)" "ours ms" "storescu ms" "ours / it"
printf '|%s|%s|%s|%s|\n' ------------------------ -------------- ----------------- -------------
for nodelay in 1 0; do
    port=$(free_port)
    mkdir -p "$tmp/in$nodelay"
    # Received files go to tmpfs so the disk does not decide the race.
    out=$(mktemp -d -p /dev/shm)
    TCP_NODELAY=$nodelay LD_PRELOAD="$shim" /usr/bin/storescp -aet STORESCP -od "$out" "$port" >"$tmp/scp$nodelay.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.05; done
    export PHOTO_PACS_PACS_BACKEND=cstore PHOTO_PACS_PACS_HOST=127.0.0.1 PHOTO_PACS_PACS_PORT="$port" \
        PHOTO_PACS_PACS_CALLED_AET=STORESCP PHOTO_PACS_SETTINGS_PATH="$tmp/none.ini"
    # hyperfine's --prepare empties the folder before every run, so the folder after it
    # shows only the last run of the last command. Each command's deliveries are counted
    # here instead: one run of each into an empty folder, before the timed runs.
    for who in ours storescu; do
        find "$out" -type f -delete
        if [ "$who" = ours ]; then
            "$ours" send "${files[@]}" >/dev/null
        else
            env TCP_NODELAY=1 /usr/bin/storescu -aec STORESCP 127.0.0.1 "$port" "${files[@]}"
        fi
        received=$(find "$out" -type f | wc -l)
        [ "$received" -eq "$count" ] || { echo "$who: storescp received $received files, expected $count" >&2; exit 1; }
    done
    hyperfine -N --style none --warmup 1 --runs "$runs" --export-json "$tmp/h.json" \
        --prepare "find $out -type f -delete" \
        "$ours send ${files[*]}" \
        "env TCP_NODELAY=1 /usr/bin/storescu -aec STORESCP 127.0.0.1 $port ${files[*]}" >/dev/null
    read -r t_ours t_scu < <(median_ms "$tmp/h.json")
    rm -rf "$out"
    label="TCP_NODELAY=$nodelay"
    [ "$nodelay" = 0 ] && label="Nagle on (default)"
    printf '| %-22s | %12s | %15s | %11s |\n' "$label" "$t_ours" "$t_scu" \
        "$(awk -v a="$t_ours" -v b="$t_scu" 'BEGIN { printf "%.2f", a / b }')"
done
echo
echo "target: ours / storescu <= 1.00 (peer with Nagle off)"
