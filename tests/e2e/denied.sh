#!/usr/bin/env bash
# Spend elsewhere on a shared account is planned around, not run into. The
# team-wide (global) account is 0.05 USD; another client of the ledger (here
# the bus probe, as the gateway would for a key) holds 0.045 of it. Six
# tasks submitted at once plan against what is left, as the ledger's
# replies report it and less the steps already dispatched: no gpt-4o step
# (it holds 0.03 USD), no reserve refused, every task done or
# budget_exhausted, the global account never past its limit. When the other
# client releases its hold, the next task sees the room and plans gpt-4o
# again. (A step the ledger does deny is re-planned without its option:
# tests/orchestrator/test_task.c, denied_step_is_replanned_without_its_option.)
. "$(dirname "$0")/lib.sh"
: "${EMADS_TEST_LLM:?EMADS_TEST_LLM must name emads-test-llm}"
[ -x "$EMADS_TEST_LLM" ] || { echo "emads-test-llm not built: skipped"; exit 77; }
: "${EMADS_BUS_PROBE:?EMADS_BUS_PROBE must name tests/bus/bus_probe}"

e2e_llm_server --usage 100,100
GLOBAL_UUSD=50000
edit_cfg "$E2E_CFG/emads.yaml" 's/^  global: .*/  global: {period: day, max_cost_usd: 0.05}/'

ctl up >/dev/null
EP="ipc://$E2E_RUN/bus.sock"
probe() { # probe NAME BODY: one request to the ledger as NAME
    "$EMADS_BUS_PROBE" call --endpoint "$EP" --home "$E2E_RUN" --name "$1" --service ledger \
        --body-json "$2"
}
text="Should we migrate billing to Kubernetes? Assess the risk."
plan=$(ctl --json plan "$text")
echo "$plan" | json 'any(s.get("model") == "gpt-4o" for s in d["steps"])' | grep -q true ||
    fail "the planner picks no gpt-4o step with the global account free; the test's premise is off"

probe orchestrator '{"v":1,"type":"open_task","request_id":"probe-open","task":"t-elsewhere"}' |
    grep -q '"open_task_ok"' || fail "the probe could not open its task"
held=$(probe cto_agent '{"v":1,"type":"reserve","request_id":"probe-hold","task":"t-elsewhere","step":"outside","ttl_ms":600000,"amounts":{"tokens":0,"latency_ms":0,"tool_calls":0,"cost_uusd":45000}}')
hold=$(echo "$held" | json 'd["hold_id"]') || fail "the probe's hold was refused: $held"

N=6
pids=""
for i in $(seq 1 $N); do
    ctl submit "$text (#$i)" >"$E2E_TMP/submit.$i" &
    pids="$pids $!"
done
for p in $pids; do wait "$p" || fail "a submit failed"; done
for i in $(seq 1 $N); do
    t=$(cat "$E2E_TMP/submit.$i")
    st=$(wait_final "$t" 60)
    ctl --json result "$t" >"$E2E_TMP/result.$i"
    echo "task $t: $st $(json '[(s["step"], s["state"], s.get("model"), [(a.get("model"), (a.get("error") or {}).get("code")) for a in s.get("attempts", [])]) for s in d["steps"]]' <"$E2E_TMP/result.$i")"
    case $st in done | budget_exhausted) ;; *) fail "task $t ended $st" ;; esac
    json 'any(s.get("model") == "gpt-4o" for s in d["steps"])' <"$E2E_TMP/result.$i" | grep -q false ||
        fail "task $t ran gpt-4o although the global account had 0.005 USD left"
done
denials=$(e2e_ledger_denials)
[ "$denials" -eq 0 ] || fail "the ledger refused $denials reserves: $(grep '^emads_ledger_denials_total' "$E2E_TMP/ledger.prom")"
sp=$(ctl --json spend)
used=$(echo "$sp" | json 'd["global"]["used"]["cost_uusd"]')
[ "$(echo "$sp" | json 'd["global"]["limit"]["cost_uusd"]')" -eq "$GLOBAL_UUSD" ] || fail "global limit: $sp"
[ "$used" -le "$GLOBAL_UUSD" ] || fail "the global account spent $used > its limit $GLOBAL_UUSD"

# the other client releases its hold: the next task has the room again
probe cto_agent "{\"v\":1,\"type\":\"void\",\"request_id\":\"probe-void\",\"hold_id\":\"$hold\"}" |
    grep -q '"void_ok"' || fail "the probe could not release its hold"
out=$(ctl --json submit --wait "$text (after)") || fail "the task after the release failed"
echo "after the release: $(echo "$out" | json '[(s["step"], s.get("model")) for s in d["steps"]]')"
echo "$out" | json 'any(s.get("model") == "gpt-4o" for s in d["steps"])' | grep -q true ||
    fail "after the release no step ran gpt-4o: the plan did not see the room"
echo "denied: ok"
