#!/usr/bin/env bash
# An agent lost mid-step: with two cto_agent workers, SIGKILL the one
# running the (slow) research step. The bus reports worker_lost, the
# orchestrator retries the step once on the other worker, and the task
# completes with the step on its second attempt.
. "$(dirname "$0")/lib.sh"
Y="$E2E_CFG/emads.yaml"
e2e_slow_research "$Y"
# Room in cto_agent's latency budget for the retry next to the lost step's
# hold, which the ledger keeps until it expires.
edit_cfg "$E2E_CFG/agents_budget.yaml" \
    's/^  cto_agent: .*/  cto_agent:      {max_tokens: 20000, max_latency_ms: 20000, max_tool_calls: 10, max_cost_usd: 2.00}/'
ctl up >/dev/null
agent_bin=$(dirname "$(readlink -f "$EMADSCTL")")/../agents/emads-agent
[ -x "$agent_bin" ] || fail "no emads-agent binary at $agent_bin"
# Read the daemon's pid before the second agent starts (it writes the same
# pid file), and stop both at the end whichever one survives.
first=$(cat "$E2E_RUN/pids/cto_agent.pid")
"$agent_bin" --name cto_agent --config "$Y" --home "$E2E_RUN" >>"$E2E_RUN/logs/cto_agent-2.log" 2>&1 &
second=$!
E2E_EXTRA_PIDS="$second $first"
for i in $(seq 1 100); do
    w=$(ctl --json status | json '[p["workers"] for p in d["processes"] if p["name"] == "cto_agent"][0]')
    [ "$w" -ge 2 ] && break
    sleep 0.05
done
[ "$w" -ge 2 ] || fail "the second cto_agent did not register"

task=$(ctl submit "search the latest news on GPU prices")
victim=""
for i in $(seq 1 100); do
    for p in $first $second; do
        pgrep -P "$p" >/dev/null 2>&1 && victim=$p
    done
    [ -n "$victim" ] && break
    sleep 0.03
done
[ -n "$victim" ] || fail "no cto_agent ran the research tool"
kill -9 "$victim"
st=$(wait_final "$task" 60)
res=$(ctl --json result "$task")
echo "$res" | json '[(s["step"], s["state"], s.get("attempt"), (s.get("error") or {}).get("code")) for s in d["steps"]]'
[ "$st" = done ] || fail "task ended $st: $(echo "$res" | json 'd.get("reason")')"
[ "$(echo "$res" | json 'd["steps"][0]["attempt"]')" -eq 2 ] || fail "research was not retried exactly once"
echo "worker_lost: ok"
