#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 30) each, on the committed corpus.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain accept them.
# A crash stops the run with its reproducer in fuzz/artifacts/<target>/.
# For CI's short runs, FUZZ_SANITIZER=none skips AddressSanitizer and FUZZ_PROFILE=dev
# builds without optimisation: minutes less to build, fewer executions per second. The
# defaults (address, release) are what the 10-minute runs use.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-30}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(multipart convert settings_ini stow_response)
command -v cargo-fuzz >/dev/null || cargo install --debug --locked cargo-fuzz@0.13.2
export RUSTC_BOOTSTRAP=1
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    echo "== fuzz $t for ${seconds}s"
    log="$(mktemp)"
    status=0
    # multipart's inputs stand for bodies of up to 300 MB (see the target), so a limit
    # well under that is what shows a buffer that grows with the body. AddressSanitizer
    # keeps 256 MB of freed memory by default to catch use after free; the target frees
    # megabytes per input, so it keeps 16 MB there, or the limit would measure the sanitizer.
    asan_options="${ASAN_OPTIONS:-}"
    case "$t" in
        multipart)
            limits=(-rss_limit_mb=256 -malloc_limit_mb=256 -max_len=65536)
            asan_options="quarantine_size_mb=16${asan_options:+:$asan_options}"
            ;;
        *) limits=(-rss_limit_mb=2048) ;;
    esac
    ASAN_OPTIONS="$asan_options" cargo fuzz run "--${FUZZ_PROFILE:-release}" --sanitizer "${FUZZ_SANITIZER:-address}" "$t" "corpus/$t" -- \
        -max_total_time="$seconds" "${limits[@]}" -timeout=10 -print_final_stats=1 >"$log" 2>&1 || status=$?
    grep -E "^(#[0-9]+[[:space:]]+DONE|Done [0-9]+ runs|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==|SUMMARY|Test unit written)" "$log" || true
    if [ "$status" -ne 0 ]; then
        tail -n 40 "$log" >&2
        echo "fuzz $t failed (exit $status): reproducer under fuzz/artifacts/$t" >&2
        exit 1
    fi
    rm -f "$log"
done
