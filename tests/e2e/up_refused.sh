#!/usr/bin/env bash
# up_refused.sh - `emadsctl up` of an agent whose configuration differs from
# the bus's in what decides money (bus.fingerprint: refuse) fails at once
# with the bus's refusal, naming both fingerprints, instead of waiting out
# the health timeout; the refused process is stopped and no pid file names
# it. The same agent with the bus's configuration then comes up.
. "$(dirname "$0")/lib.sh"

ctl up --only core >/dev/null || fail "up --only core"
# the workers' fingerprint: every core worker has the bus's configuration
busfp=$(ctl --json status | json '[w["fingerprint"] for w in d["workers"] if w["service"] == "ledger"][0]')
[ -n "$busfp" ] || fail "no fingerprint of the ledger's worker in status"

cp -r "$E2E_CFG" "$E2E_TMP/config100"
edit_cfg "$E2E_TMP/config100/emads.yaml" 's/input_usd_per_mtok: 2.50/input_usd_per_mtok: 250.00/'
up100() {
    "$EMADSCTL" --home "$E2E_RUN" --config "$E2E_TMP/config100/emads.yaml" "$@"
}

rc=0
up100 up --only cto_agent >"$E2E_TMP/out" 2>"$E2E_TMP/err" || rc=$?
[ "$rc" -eq 1 ] || fail "up of a refused agent exited $rc: $(cat "$E2E_TMP/out" "$E2E_TMP/err")"
grep -q "did not become healthy" "$E2E_TMP/err" && fail "up waited out the health timeout: $(cat "$E2E_TMP/err")"
line=$(grep "cto_agent: the bus refuses its worker: config fingerprint mismatch" "$E2E_TMP/err") ||
    fail "up does not say the bus refused the worker: $(cat "$E2E_TMP/err")"
fps=$(echo "$line" | sed -n "s/.*this worker's is \([0-9a-f]*\), the bus's is \([0-9a-f]*\) .*/\1 \2/p")
set -- $fps
[ $# -eq 2 ] && [ "$1" != "$2" ] || fail "the message does not name two fingerprints: $line"
[ "$2" = "$busfp" ] || fail "the bus's fingerprint in the message is $2, the bus's workers have $busfp"
grep -q "^starting cto_agent .*FAILED" "$E2E_TMP/out" || fail "up output: $(cat "$E2E_TMP/out")"
[ ! -e "$E2E_RUN/pids/cto_agent.pid" ] || fail "a pid file names the refused agent"
pid=$(grep -o "^.*cto_agent\[[0-9]*\]" "$E2E_RUN/logs/cto_agent.log" | head -1 | grep -o "[0-9]*\]$" | tr -d ']')
[ -n "$pid" ] || fail "no pid in the refused agent's log"
for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
! kill -0 "$pid" 2>/dev/null || fail "the refused agent (pid $pid) still runs"
echo "ok: up stopped at the refusal: $line"

# --json carries the refusal too
rc=0
j=$(up100 --json up --only cto_agent 2>/dev/null) || rc=$?
[ "$rc" -eq 1 ] || fail "up --json of a refused agent exited $rc"
echo "$j" | json '[p["refused"] for p in d["processes"] if p["name"] == "cto_agent"][0]' |
    grep -q "config fingerprint mismatch: this worker's is $1, the bus's is $2" ||
    fail "up --json: no refusal: $j"

# with the bus's configuration the agent comes up
ctl up --only cto_agent >"$E2E_TMP/out" 2>&1 || fail "up with the bus's configuration: $(cat "$E2E_TMP/out")"
echo "up_refused: ok"
