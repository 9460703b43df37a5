#!/usr/bin/env bash
# systemd_units.sh - contrib/systemd (issue 18): one unit per daemon and a
# template for the agents, each restarting on failure, each ExecStart a
# program of this build with flags it accepts (the program is run with
# those flags and --help, with %i and ${...} filled in), and every unit
# passes `systemd-analyze verify` (when systemd-analyze is present) with
# its paths pointed at the build tree.
set -eu
: "${EMADSCTL:?EMADSCTL must name the emadsctl binary}"
UNITS=$(dirname "$0")/../../contrib/systemd
BUILD=$(dirname "$(readlink -f "$EMADSCTL")")/..
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
T=$(mktemp -d /tmp/emads-units.XXXXXX)
trap 'rm -rf "$T"' EXIT

for u in emads-bus.service emads-ledger.service emads-orchestrator.service emads-gateway.service \
    emads-agent@.service; do
    f="$UNITS/$u"
    [ -f "$f" ] || fail "no unit $u"
    grep -qx "Restart=on-failure" "$f" || fail "$u does not restart on failure"
    exec_line=$(sed -n 's/^ExecStart=//p' "$f")
    [ -n "$exec_line" ] || fail "$u has no ExecStart"
    prog=${exec_line%% *}
    base=$(basename "$prog")
    [ "$prog" = "/usr/local/bin/$base" ] || fail "$u: ExecStart $prog is not in the install prefix"
    bin=$(find "$BUILD" -maxdepth 2 -type f -name "$base" -perm -u+x | head -1)
    [ -n "$bin" ] || fail "$u: no program $base in the build tree"
    # the flags as systemd would pass them, then --help: 0 only when every flag is known
    args=$(echo "${exec_line#* }" | sed -e 's/%i/cto_agent/g' -e "s|\${EMADS_HOME}|$T/run|g" \
        -e "s|\${EMADS_CONFIG}|$BUILD/../config/emads.yaml|g")
    # shellcheck disable=SC2086 # the unit's arguments, split as systemd splits them
    "$bin" $args --help >"$T/help.out" 2>&1 || fail "$u: $base rejects its flags ($args): $(cat "$T/help.out")"
    grep -qi "usage" "$T/help.out" || fail "$u: $base --help printed no usage"
    sed "s|/usr/local/bin/|$(readlink -f "$(dirname "$bin")")/|" "$f" >"$T/$u"
done
grep -q '^EnvironmentFile=-/etc/emads/agent-%i.env' "$UNITS/emads-agent@.service" ||
    fail "the agent template reads no per-agent environment (EMADS_INSTANCE)"
if command -v systemd-analyze >/dev/null; then
    cp "$T/emads-agent@.service" "$T/emads-agent@cto_agent.service"
    for u in emads-bus.service emads-ledger.service emads-orchestrator.service \
        emads-gateway.service emads-agent@cto_agent.service; do
        out=$(cd "$T" && systemd-analyze verify --man=no "./$u" 2>&1) ||
            fail "systemd-analyze verify $u: $out"
        echo "$out" | grep -i "$u" && fail "systemd-analyze verify $u warns: $out"
    done
    echo "systemd-analyze verify: ok"
fi
echo "systemd_units: ok"
