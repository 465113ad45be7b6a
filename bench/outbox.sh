#!/usr/bin/env bash
# Draining a backlog: dcmtk's storescp is down while 100 two-photo studies of 12 MP phone
# photos (bench/make-photos.sh) are uploaded to the release gateway (each answered 202);
# then storescp comes back and the outbox delivers all 200 objects. Compared, in one run,
# with dcmtk's storescu sending the same 200 files in one association. Both peers and both
# clients with Nagle off (TCP_NODELAY=1; our sockets always). Median of $RUNS runs.
#
# While the PACS is down, each upload must be answered 202 within PHOTO_PACS_DELIVERY_WAIT_S
# (3 s here) plus 1 s; the slowest answer is printed and a slower one fails the run.
# Figures, each measured the same way for both senders, from storescp's received files
# (on tmpfs, so the disk does not decide the race):
#   first->last   time from the first object's arrival to the last one's
#   wall          ours: from storescp's start to the last arrival (includes waiting for
#                 the next retry, at most PHOTO_PACS_RETRY_MAX_S); storescu: the command
#
#   bench/outbox.sh            RUNS=3 STUDIES=100 bench/outbox.sh
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${RUNS:-3}"
studies="${STUDIES:-100}"
retry_max="${RETRY_MAX_S:-2}"

# shellcheck source=bench/lib.sh
source bench/lib.sh
apt_need "/usr/bin/storescu:dcmtk" "cc:gcc"
bench/make-photos.sh target/bench-photos >/dev/null
cargo build --release --quiet
ours="$PWD/target/release/photo-pacs"
photo="$PWD/target/bench-photos/phone-12mp.jpg"
shim="$(loopback_shim)"


wait_port() {
    for _ in $(seq 200); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done
    echo "nothing listens on $1" >&2
    return 1
}
start_scp() { # port, folder -> pid
    TCP_NODELAY=1 LD_PRELOAD="$shim" /usr/bin/storescp -aet STORESCP -od "$2" "$1" >/dev/null 2>&1 &
    echo $!
}
wait_files() { # folder, count
    for _ in $(seq 6000); do
        [ "$(find "$1" -type f | wc -l)" -ge "$2" ] && return 0
        sleep 0.05
    done
    echo "only $(find "$1" -type f | wc -l) of $2 objects arrived" >&2
    return 1
}
span() { # folder -> "first->last seconds" from the files' modification times
    find "$1" -type f -printf '%T@\n' | sort -n | awk 'NR == 1 { f = $1 } { l = $1 } END { printf "%.3f", l - f }'
}
last_at() { find "$1" -type f -printf '%T@\n' | sort -n | tail -n 1; }
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

ours_span=() ours_wall=() scu_span=() scu_wall=() answers=()
for r in $(seq "$runs"); do
    work="$tmp/run$r"
    mkdir -p "$work"
    pacs_port=$(free_port)
    gw_port=$(free_port)
    (cd "$work" && exec env PHOTO_PACS_LISTEN="127.0.0.1:$gw_port" PHOTO_PACS_PACS_BACKEND=cstore \
        PHOTO_PACS_PACS_HOST=127.0.0.1 PHOTO_PACS_PACS_PORT="$pacs_port" PHOTO_PACS_PACS_CALLED_AET=STORESCP \
        PHOTO_PACS_RETRY_MAX_S="$retry_max" PHOTO_PACS_DELIVERY_WAIT_S=3 PHOTO_PACS_KEEP_FILES_ON_SUCCESS=true \
        PHOTO_PACS_MIN_FREE_MB=0 "$ours" 2>"$work/gateway.log") &
    gw_pid=$!
    pids+=("$gw_pid")
    wait_port "$gw_port"
    for n in $(seq "$studies"); do
        read -r code took < <(curl -s -o "$work/answer.json" -w '%{http_code} %{time_total}\n' -F "patientId=DRAIN$n" \
            -F "images[]=@$photo" -F "images[]=@$photo" "http://127.0.0.1:$gw_port/api/studies")
        [ "$code" = 202 ] || { echo "study $n: HTTP $code $(cat "$work/answer.json")" >&2; exit 1; }
        answers+=("$took")
    done
    # The PACS comes back.
    in_ours=$(mktemp -d -p /dev/shm)
    back=$(date +%s.%N)
    scp_pid=$(start_scp "$pacs_port" "$in_ours")
    pids+=("$scp_pid")
    wait_files "$in_ours" $((2 * studies))
    ours_span+=("$(span "$in_ours")")
    ours_wall+=("$(awk -v a="$(last_at "$in_ours")" -v b="$back" 'BEGIN { printf "%.3f", a - b }')")
    kill "$scp_pid" "$gw_pid" 2>/dev/null || true
    wait "$gw_pid" 2>/dev/null || true
    rm -rf "$in_ours"

    # The same 200 files, by storescu in one association.
    mapfile -t files < <(find "$work/data/dicom" -name '*.dcm' | sort)
    [ "${#files[@]}" -eq $((2 * studies)) ] || { echo "kept ${#files[@]} objects" >&2; exit 1; }
    in_scu=$(mktemp -d -p /dev/shm)
    scu_port=$(free_port)
    scp_pid=$(start_scp "$scu_port" "$in_scu")
    pids+=("$scp_pid")
    wait_port "$scu_port"
    t0=$(date +%s.%N)
    TCP_NODELAY=1 /usr/bin/storescu -aec STORESCP 127.0.0.1 "$scu_port" "${files[@]}"
    t1=$(date +%s.%N)
    wait_files "$in_scu" $((2 * studies))
    scu_span+=("$(span "$in_scu")")
    scu_wall+=("$(awk -v a="$t1" -v b="$t0" 'BEGIN { printf "%.3f", a - b }')")
    kill "$scp_pid" 2>/dev/null || true
    rm -rf "$in_scu" "$work"
done

bytes=$(stat -c %s "$photo")
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "runs: $runs; $studies studies of 2 photos ($bytes-byte 12 MP JPEG, sent as 1008x756 RGB objects); retry cap ${retry_max} s"
slowest=$(printf '%s\n' "${answers[@]}" | sort -n | tail -n 1)
echo "uploads while the PACS was down: ${#answers[@]} answered 202, median $(median "${answers[@]}") s, slowest $slowest s (limit: wait 3 s + 1 s)"
awk -v t="$slowest" 'BEGIN { exit !(t <= 4.0) }' || { echo "an upload was answered later than the wait plus 1 s" >&2; exit 1; }
echo
printf '| %-32s | %12s | %12s |\n' "sender" "first->last s" "wall s"
printf '|%s|%s|%s|\n' ---------------------------------- -------------- --------------
printf '| %-32s | %12s | %12s |\n' "outbox drain (photo-pacs)" "$(median "${ours_span[@]}")" "$(median "${ours_wall[@]}")"
printf '| %-32s | %12s | %12s |\n' "storescu, same files, one run" "$(median "${scu_span[@]}")" "$(median "${scu_wall[@]}")"
echo
echo "ours first->last / storescu wall: $(awk -v a="$(median "${ours_span[@]}")" -v b="$(median "${scu_wall[@]}")" 'BEGIN { printf "%.2f", a / b }') (target <= 1.50)"
echo "runs: ours first->last ${ours_span[*]}; ours wall ${ours_wall[*]}; storescu first->last ${scu_span[*]}; storescu wall ${scu_wall[*]}"
