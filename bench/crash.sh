#!/usr/bin/env bash
# The crash test's long form: kill -9 the gateway $KILLS times at random moments (and stop
# and start storescp now and then) while two clients upload studies; then check that every
# study answered 200 or 202 is in the PACS once, every object is whole, nothing is left
# half-built. CI runs the same test with 8 kills (tests/outbox/crash.rs).
#
#   bench/crash.sh            KILLS=100 bench/crash.sh            SEED=123 bench/crash.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export OUTBOX_CRASH_KILLS="${KILLS:-60}"
[ -n "${SEED:-}" ] && export OUTBOX_CRASH_SEED="$SEED"
cargo test --quiet --test outbox -- crash::kill_9_at_random_moments_loses_nothing_and_sends_nothing_twice --exact --nocapture 2>&1 |
    grep -E '^(kills|test result)|panicked|assert' 
