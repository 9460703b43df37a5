#!/usr/bin/env bash
# Build emads (warnings are errors) and run every test: unit and system.
# Usage: bash tests/run.sh [BUILD_DIR]      (default: build)
# Prints meson's summary and, last, one line "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
bash ctl/install-deps.sh || { echo "dependency install failed"; exit 2; }
if [ ! -f "$B/build.ninja" ]; then
  meson setup "$B" -Dwerror=true >/dev/null || { echo "meson setup failed"; exit 2; }
else
  meson configure "$B" -Dwerror=true >/dev/null || { echo "meson configure failed"; exit 2; }
fi
ninja -C "$B" >"$B/ninja.log" 2>&1 || { cat "$B/ninja.log"; echo "build failed"; exit 2; }
meson test -C "$B" --print-errorlogs --num-processes 2 2>&1 | tee "$B/test-summary.txt"
rc=${PIPESTATUS[0]}
ok=$(sed -n 's/^Ok: *\([0-9]*\).*/\1/p' "$B/test-summary.txt" | tail -1)
fail=$(sed -n 's/^Fail: *\([0-9]*\).*/\1/p' "$B/test-summary.txt" | tail -1)
to=$(sed -n 's/^Timeout: *\([0-9]*\).*/\1/p' "$B/test-summary.txt" | tail -1)
echo "${ok:-0} passed, $(( ${fail:-0} + ${to:-0} )) failed"
exit $rc
