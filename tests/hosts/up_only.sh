#!/usr/bin/env bash
# up_only.sh - partial start and stop on one host (issue 18), no root needed:
#  - bad --only / --identity are usage errors; a bus elsewhere is never
#    started and a host without an identity for it gets no certificates,
#    pid files or processes;
#  - up --only core, then --only agents; down --only agents leaves the core
#    running and takes the agents off the supervisor's list;
#  - the supervisor restarts a killed ledger (status: RESTARTS 1); down
#    stops the supervisor first;
#  - with bus.fingerprint: warn, a worker whose prices differ is accepted
#    and the bus logs the mismatch.
. "$(dirname "$0")/../e2e/lib.sh"
edit_cfg "$E2E_CFG/emads.yaml" 's/^  fingerprint: refuse /  fingerprint: warn /'

rc=0
ctl up --only bogus 2>"$E2E_TMP/err" || rc=$?
[ $rc -eq 2 ] || fail "up --only bogus: exit $rc, want 2"
grep -q "unknown part 'bogus'" "$E2E_TMP/err" || fail "no clear message: $(cat "$E2E_TMP/err")"
rc=0
ctl up --identity "$E2E_TMP/nothing" 2>"$E2E_TMP/err" || rc=$?
[ $rc -eq 2 ] || fail "up --identity of no bundle: exit $rc, want 2"
# a bus on another host (TEST-NET-1), no identity for it
for only in emads-bus cto_agent; do
    rc=0
    ctl up --only "$only" --bus tcp://192.0.2.1:5555 >"$E2E_TMP/out" 2>&1 || rc=$?
    [ $rc -eq 1 ] || fail "up --only $only with a remote bus and no identity: exit $rc, want 1: $(cat "$E2E_TMP/out")"
    n=$(find "$E2E_RUN" -name '*.cert*' -o -name '*.pid' 2>/dev/null | wc -l)
    [ "$n" -eq 0 ] || fail "a failed up left $n certificates or pid files: $(find "$E2E_RUN" -type f)"
done
grep -q "no certificate for emadsctl" "$E2E_TMP/out" || fail "no clear message: $(cat "$E2E_TMP/out")"
rm -f "$E2E_RUN/bus.endpoint"

ctl up --only core >"$E2E_TMP/out" || fail "up --only core: $(cat "$E2E_TMP/out")"
grep -q "starting cto_agent" "$E2E_TMP/out" && fail "up --only core started an agent"
rc=0
ctl status >/dev/null || rc=$?
[ $rc -eq 1 ] || fail "status with the agents stopped: exit $rc, want 1"
ctl up --only agents >"$E2E_TMP/out" || fail "up --only agents: $(cat "$E2E_TMP/out")"
grep -q "starting emads-ledger" "$E2E_TMP/out" && fail "up --only agents started the ledger"
ctl status >/dev/null || fail "status after core and agents: exit $?"
grep -qx cto_agent "$E2E_RUN/supervise" || fail "cto_agent is not supervised: $(cat "$E2E_RUN/supervise")"

ctl down --only agents >/dev/null || fail "down --only agents"
grep -qx cto_agent "$E2E_RUN/supervise" && fail "cto_agent is still on the supervisor's list"
st=$(ctl --json status || true)
[ "$(echo "$st" | json '[p["state"] for p in d["processes"] if p["name"] == "emads-ledger"][0]')" = running ] ||
    fail "down --only agents stopped the ledger: $st"
[ "$(echo "$st" | json '[p["state"] for p in d["processes"] if p["name"] == "cto_agent"][0]')" = stopped ] ||
    fail "down --only agents left cto_agent: $st"
sleep 1.5 # a supervisor tick: the stopped agents stay stopped
[ -z "$(ctl --json status | json '[p["pid"] for p in d["processes"] if p["name"] == "cto_agent" and p["pid"]]' | tr -d '[]')" ] ||
    fail "the supervisor started a process down stopped"

# the supervisor restarts a killed ledger
kill -9 "$(cat "$E2E_RUN/pids/emads-ledger.pid")"
r=0
for _ in $(seq 1 150); do
    r=$(ctl --json status 2>/dev/null | json '[p["restarts"] for p in d["processes"] if p["name"] == "emads-ledger" and p["state"] == "running"] or [0]' | tr -d '[]') || r=0
    [ "${r:-0}" -ge 1 ] && break
    sleep 0.1
done
[ "${r:-0}" -ge 1 ] || fail "the killed ledger was not restarted: $(cat "$E2E_RUN/logs/emads-supervisor.log")"
# a clean stop (SIGTERM: the daemon removes its pid file) is not a crash
gw=$(cat "$E2E_RUN/pids/emads-gateway.pid")
kill -TERM "$gw"
for _ in $(seq 1 100); do kill -0 "$gw" 2>/dev/null || break; sleep 0.1; done
sleep 1.5 # three supervisor ticks
[ ! -e "$E2E_RUN/pids/emads-gateway.pid" ] || fail "the gateway stopped by SIGTERM was started again"
[ "$(ctl --json status | json '[p["restarts"] for p in d["processes"] if p["name"] == "emads-gateway"][0]')" -eq 0 ] ||
    fail "a clean stop counted as a restart"
echo "ok: --only core/agents, down --only, the supervisor restarted the killed ledger, not the stopped gateway"

# a worker with other prices: warned of (bus.fingerprint: warn), accepted
cp -r "$E2E_CFG" "$E2E_TMP/config100"
edit_cfg "$E2E_TMP/config100/emads.yaml" 's/input_usd_per_mtok: 2.50/input_usd_per_mtok: 250.00/'
agent=$(dirname "$(readlink -f "$EMADSCTL")")/../agents/emads-agent
OPENAI_API_KEY=x setsid "$agent" --name coo_agent --config "$E2E_TMP/config100/emads.yaml" \
    --home "$E2E_RUN" >"$E2E_TMP/drift.log" 2>&1 &
E2E_EXTRA_PIDS="${E2E_EXTRA_PIDS:-} $!"
w=$(wait_workers coo_agent 1 200)
[ "$w" -ge 1 ] || fail "the warned worker was not accepted"
grep -q "config fingerprint mismatch.*accepted (bus.fingerprint: warn)" "$E2E_RUN/logs/emads-bus.log" ||
    fail "the bus did not warn of the mismatch"
kill "$!" 2>/dev/null || true

ctl down >"$E2E_TMP/out" || fail "down"
grep -q "stopped  supervisor" "$E2E_TMP/out" || fail "down did not stop the supervisor first: $(cat "$E2E_TMP/out")"
[ ! -e "$E2E_RUN/supervise" ] || fail "down left the supervision list"
echo "up_only: ok"
