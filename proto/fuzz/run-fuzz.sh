#!/bin/sh
# run-fuzz.sh BUILD_DIR SECONDS - run the decoder fuzz target for SECONDS.
#
# BUILD_DIR must be configured with CC=clang -Dfuzz=true (and, for the
# checks to mean much, -Db_sanitize=address,undefined) and fuzz_decode
# built; this script builds nothing. The fuzzer works on a temporary copy
# of proto/fuzz/corpus, so the committed seeds never change. Exits non-zero
# on any crash, leak, timeout or sanitizer report, leaving the reproducer
# and the log in the printed directory.
set -eu

if [ $# -ne 2 ]; then
    echo "usage: $0 BUILD_DIR SECONDS" >&2
    exit 2
fi
build=$1
secs=$2
here=$(cd "$(dirname "$0")" && pwd)
bin=$build/proto/fuzz/fuzz_decode
if [ ! -x "$bin" ]; then
    echo "run-fuzz: $bin not found (configure with CC=clang -Dfuzz=true and build it)" >&2
    exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/emads-fuzz.XXXXXX")
mkdir "$work/corpus" "$work/artifacts"
cp "$here"/corpus/* "$work/corpus/"

export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"

rc=0
"$bin" -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=1024 \
    -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
    "$work/corpus" >"$work/fuzz.log" 2>&1 || rc=$?

tail -n 20 "$work/fuzz.log"
if [ $rc -ne 0 ] || grep -q -e "ERROR: AddressSanitizer" -e "runtime error:" \
    -e "ERROR: libFuzzer" -e "ERROR: LeakSanitizer" "$work/fuzz.log" ||
    [ -n "$(ls -A "$work/artifacts")" ]; then
    echo "run-fuzz: FAILED (exit $rc); log and reproducers in $work" >&2
    exit 1
fi
echo "run-fuzz: ok, ${secs}s without a finding"
rm -rf "$work"
