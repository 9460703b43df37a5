#!/usr/bin/env bash
# A clean stop of the orchestrator (SIGTERM) while a step runs on a slow
# provider loses no work: the orchestrator stops taking submits and starting
# steps, waits for the step in flight and records its result, then exits;
# after `emadsctl up` restarts it the task carries on and ends done. The step
# that was in flight ran once (one provider call per LLM step in the test
# server's log, one attempt each) and the steps' actual spend equals the
# ledger's spend for the task.
. "$(dirname "$0")/lib.sh"
: "${EMADS_TEST_LLM:?EMADS_TEST_LLM must name emads-test-llm}"
[ -x "$EMADS_TEST_LLM" ] || { echo "emads-test-llm not built: skipped"; exit 77; }

# 2 s per call: slow, but within the gpt-4o steps' latency hold (3 s).
e2e_llm_server --usage 1000,1000 --scenario slow:2000

ctl up >/dev/null
pidfile="$E2E_RUN/pids/emads-orchestrator.pid"
[ -s "$pidfile" ] || fail "no orchestrator pid file at $pidfile"
task=$(ctl --json submit "Should we migrate billing to Kubernetes? Assess the risk." | json 'd["task"]')

# wait until a step runs
running=""
for i in $(seq 1 100); do
    running=$(ctl --json status "$task" | json '[s["step"] for s in d["steps"] if s["state"] == "running"]')
    [ "$running" != "[]" ] && break
    sleep 0.1
done
[ "$running" != "[]" ] || fail "no step started"
echo "running: $running"

pid=$(cat "$pidfile")
kill -TERM "$pid"
for i in $(seq 1 400); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "the orchestrator did not stop within 40 s of SIGTERM"
grep -q "stopping: waiting" "$E2E_RUN/logs/emads-orchestrator.log" \
    || fail "the orchestrator did not wait for the step in flight"

ctl up >/dev/null
st=$(wait_final "$task" 60)
out=$(ctl --json result "$task")
echo "$out" | json '[(s["step"], s["state"], s.get("path"), s.get("model"), s.get("attempt"), (s.get("error") or {}).get("code")) for s in d["steps"]]'
[ "$st" = done ] || fail "task ended $st after the restart: $(echo "$out" | json 'd.get("reason")')"
echo "$out" | json 'any("restarted" in (s.get("error") or {}).get("code", "") for s in d["steps"])' \
    | grep -q false || fail "a step was lost to the restart"
echo "$out" | json 'all(s.get("attempt", 0) <= 1 for s in d["steps"])' | grep -q true \
    || fail "a step ran more than once"
llm_steps=$(echo "$out" | json 'sum(1 for s in d["steps"] if s.get("path") == "llm")')
calls=$(grep -c '"status":200' "$E2E_TMP/llm.log" || true)
[ "$llm_steps" -ge 1 ] || fail "no LLM step ran"
[ "$calls" -eq "$llm_steps" ] || fail "$calls provider calls for $llm_steps LLM steps: a step ran twice"
sp=$(ctl --json spend --task "$task")
for dim in tokens cost_uusd tool_calls; do
    steps=$(echo "$out" | json "sum(s.get('actual', {}).get('$dim', 0) for s in d['steps'])")
    ledger=$(echo "$sp" | json "d['total']['used']['$dim']")
    [ "$steps" -eq "$ledger" ] || fail "steps' actual $dim add to $steps, the ledger has $ledger"
done
echo "stop_drain: ok ($calls provider calls, spend $(echo "$sp" | json 'd["total"]["used"]["cost_uusd"]') uUSD)"
