#!/usr/bin/env bash
# Quick start: install the dependencies, build emads, launch the
# constellation with the default config, submit a sample task, and print the
# result and the spend table. The constellation stays up afterwards; stop it
# with `build/ctl/emadsctl down`.
# Usage: bash ctl/quickstart.sh ["task text"]
set -euo pipefail
cd "$(dirname "$0")/.."
TASK=${1:-"Should we move our billing service to Kubernetes this quarter? Search our notes for the latest deployment and scaling guidance."}
bash ctl/install-deps.sh
if [ ! -f build/build.ninja ]; then meson setup build -Dwerror=true >/dev/null; fi
echo "building ..."
ninja -C build >/dev/null
CTL=build/ctl/emadsctl
export EMADS_CONFIG=${EMADS_CONFIG:-$PWD/config/emads.yaml}
$CTL up
$CTL submit --wait "$TASK"
$CTL spend
echo
echo "The constellation is still running: try '$CTL status', '$CTL watch', '$CTL plan \"...\"'."
echo "Stop it with '$CTL down'."
