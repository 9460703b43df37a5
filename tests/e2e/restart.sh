#!/usr/bin/env bash
# SIGKILL of the orchestrator while a step runs, then restart: the task ends
# in a defined state (failed, "orchestrator restarted mid-step", or done if
# the step was not running after all), no finished step runs again, the
# steps the orchestrator recorded add up to exactly what the ledger spent,
# nothing stays held, and the restarted orchestrator runs new tasks.
. "$(dirname "$0")/lib.sh"
Y="$E2E_CFG/emads.yaml"
# A slow research tool (1.5 s), so the kill lands while it runs.
e2e_slow_research "$Y"
# With the test LLM server (1.5 s per answer), a second round kills the
# orchestrator after research finished, while the analyses run.
llm=false
if [ -x "${EMADS_TEST_LLM:-}" ]; then
    e2e_llm_server --scenario slow:1500
    edit_cfg "$Y" 's/latency_ms: 3000, quality/latency_ms: 4000, quality/'
    edit_cfg "$E2E_CFG/agents_budget.yaml" \
        's/^  \(cto_agent\|coo_agent\): *{max_tokens: \([0-9]*\), max_latency_ms: [0-9]*/  \1: {max_tokens: \2, max_latency_ms: 20000/'
    llm=true
fi

# check_sums TASK: the steps recorded add up to the ledger's spend, nothing held
check_sums() {
    local res sp steps ledger
    res=$(ctl --json result "$1")
    sp=$(ctl --json spend --task "$1")
    for k in tokens latency_ms tool_calls cost_uusd; do
        steps=$(echo "$res" | json "sum(s.get('actual', {}).get('$k', 0) for s in d['steps'])")
        ledger=$(echo "$sp" | json "sum(a['used']['$k'] for a in d['agents'])")
        [ "$steps" -eq "$ledger" ] || fail "$1 $k: steps recorded $steps, ledger spent $ledger"
    done
    [ "$(echo "$sp" | json 'sum(d["total"]["held"].values())')" -eq 0 ] || fail "$1: holds left"
}

ctl up >/dev/null
task=$(ctl submit "search the latest news on GPU prices")
for i in $(seq 1 50); do
    st=$(ctl --json result "$task" | json 'd["steps"][0]["state"]')
    [ "$st" = running ] && break
    sleep 0.05
done
[ "$st" = running ] || fail "research never ran"
pid=$(cat "$E2E_RUN/pids/emads-orchestrator.pid")
kill -9 "$pid"
sleep 2.5   # the agent finishes and commits while no orchestrator listens
ctl up >/dev/null
st=$(wait_final "$task" 90)
res=$(ctl --json result "$task")
echo "$res" | json '[(s["step"], s["state"], s.get("attempt"), s.get("actual")) for s in d["steps"]]'
case $st in
failed) echo "$res" | json 'd["reason"]' | grep -q "restarted mid-step" || fail "reason: $(echo "$res" | json 'd["reason"]')" ;;
done) ;;
*) fail "task ended $st" ;;
esac
[ "$(echo "$res" | json 'max(s.get("attempt", 0) for s in d["steps"])')" -le 1 ] || fail "a step ran twice"
check_sums "$task"
sp=$(ctl --json spend --task "$task")
[ "$(echo "$sp" | json 'd["agents"][0]["used"]["tool_calls"]')" -ge 1 ] || fail "the lost step's tool call is not in the ledger"

if $llm; then
    task=$(ctl submit "search the latest news on GPU prices")
    for i in $(seq 1 200); do
        st=$(ctl --json result "$task" 2>/dev/null | json 'd["steps"][0]["state"] + "/" + d["steps"][1]["state"]' 2>/dev/null) || st=
        [ "$st" = done/running ] && break
        sleep 0.03
    done
    [ "$st" = done/running ] || fail "never saw research done with cto_analysis running ($st)"
    kill -9 "$(cat "$E2E_RUN/pids/emads-orchestrator.pid")"
    sleep 2.5
    ctl up >/dev/null
    st=$(wait_final "$task" 90)
    res=$(ctl --json result "$task")
    echo "$res" | json '[(s["step"], s["state"], s.get("attempt"), s.get("measured")) for s in d["steps"]]'
    [ "$st" = failed ] || fail "second round: task ended $st"
    [ "$(echo "$res" | json 'd["steps"][0]["state"] + str(d["steps"][0]["attempt"])')" = done1 ] \
        || fail "research did not stay done after one attempt"
    [ "$(echo "$res" | json 'd["steps"][3]["attempt"]')" -eq 0 ] || fail "reconcile ran after the restart"
    check_sums "$task"
fi
ctl submit --wait "what is our deployment process" >/dev/null || fail "new task after restart did not complete"
echo "restart: ok ($st)"
