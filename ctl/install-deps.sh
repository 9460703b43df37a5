#!/usr/bin/env bash
# Install the Debian packages emads needs to build, test and run.
# Usage: bash ctl/install-deps.sh        (as root, or with sudo available)
# chromium (dashboard test), prometheus (promtool), tmux (emadsctl top test)
# and node/npm (the gateway test runs the real OpenAI and Anthropic SDKs)
# are needed by the tests only. tzdata: the zone database of
# ledger.timezone (named zones; the period unit tests use several).
set -euo pipefail
PKGS=(build-essential pkg-config meson ninja-build
      libzmq3-dev libczmq-dev libmsgpack-dev libyaml-dev libcurl4-openssl-dev
      libjansson-dev libsqlite3-dev libmicrohttpd-dev libcriterion-dev
      clang libclang-rt-14-dev procps python3 jq curl iproute2
      chromium prometheus tmux libsodium-dev nodejs npm tzdata)
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
missing=()
for p in "${PKGS[@]}"; do
  # A node and npm already on PATH (not from Debian) are used as they are.
  if [ "$p" = nodejs ] || [ "$p" = npm ]; then command -v "${p/nodejs/node}" >/dev/null && continue; fi
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
