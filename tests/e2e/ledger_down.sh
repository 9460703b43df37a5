#!/usr/bin/env bash
# With the ledger down, a submitted task fails promptly and says why: state
# failed, reason "ledger unavailable: ...", no step run (open_task is tried
# twice, not retried for half a minute). The orchestrator then still serves
# status and result from its own store.
. "$(dirname "$0")/lib.sh"

ctl up >/dev/null
pidfile="$E2E_RUN/pids/emads-ledger.pid"
[ -s "$pidfile" ] || fail "no ledger pid file at $pidfile"
pid=$(cat "$pidfile")
kill -TERM "$pid"
for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "the ledger did not stop"

if out=$(ctl --json submit --wait --timeout 25 "Should we migrate billing to Kubernetes? Assess the risk."); then
    fail "submit --wait succeeded without a ledger"
fi
echo "$out" | json '(d.get("state"), d.get("reason"))'
[ "$(echo "$out" | json 'd["state"]')" = failed ] || fail "task not failed: $out"
echo "$out" | json 'd.get("reason", "")' | grep -q "^ledger unavailable: " \
    || fail "reason does not say the ledger is unavailable: $out"
echo "$out" | json 'all(s.get("attempt", 0) == 0 for s in d["steps"])' | grep -q true \
    || fail "a step ran without a ledger"
echo "ledger_down: ok"
