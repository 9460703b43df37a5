#!/usr/bin/env bash
# A step whose reply is lost after its agent reserved: the only cto_agent is
# SIGKILLed while its LLM call is in flight (emads-test-llm slow:MS), so the
# step gets worker_lost instead of a step_result, and the agent's hold stays
# open until close_task charges it in full. After the task ends, the lost
# attempt shows the ledger's charge (measured "ledger"), and the steps'
# actual (tokens, cost, tool calls) adds up to the ledger's spend for the
# task.
. "$(dirname "$0")/lib.sh"
: "${EMADS_TEST_LLM:?EMADS_TEST_LLM must name emads-test-llm}"
[ -x "$EMADS_TEST_LLM" ] || { echo "emads-test-llm not built: skipped"; exit 77; }

e2e_llm_server --usage 1000,1000 --scenario slow:6000
port=$E2E_LLM_PORT

ctl up >/dev/null
agent=$(cat "$E2E_RUN/pids/cto_agent.pid")
task=$(ctl submit "Should we migrate billing to Kubernetes? Assess the risk.")

# Wait until the cto_agent has a connection open to the provider: its LLM
# call is in flight, after its reserve at the ledger.
inflight=""
for i in $(seq 1 400); do
    if ss -Htnp state established "( dport = :$port )" 2>/dev/null | grep -q "pid=$agent,"; then
        inflight=yes
        break
    fi
    sleep 0.025
done
[ -n "$inflight" ] || fail "the cto_agent made no LLM call"
kill -9 "$agent"

st=$(wait_final "$task" 50)
case $st in done|failed|budget_exhausted) ;; *) fail "task ended $st" ;; esac
# `result` shows a decided end at once, while the steps in flight finish and
# the task is closed at the ledger; wait for that (the attempt whose reply
# was lost gets its spend when the task is closed).
settled='not any(s["state"] == "running" for s in d["steps"]) and all("actual" in a for s in d["steps"] for a in s.get("attempts", []) if (a.get("error") or {}).get("code") == "worker_lost")'
for i in $(seq 1 200); do
    res=$(ctl --json result "$task")
    echo "$res" | json "$settled" | grep -q true && break
    sleep 0.1
done
echo "$res" | json '[(s["step"], s["state"], s.get("attempt"), (s.get("error") or {}).get("code"), s.get("actual")) for s in d["steps"]]'

# The attempt that lost its worker carries the ledger's charge for it.
echo "$res" | json '[a for s in d["steps"] for a in s.get("attempts", []) if (a.get("error") or {}).get("code") == "worker_lost"]' \
    > "$E2E_TMP/lost"
[ "$(json 'len(d)' < "$E2E_TMP/lost")" -ge 1 ] || fail "no attempt ended worker_lost: $res"
json 'all(a.get("measured") == "ledger" for a in d)' < "$E2E_TMP/lost" | grep -q true \
    || fail "the lost attempt does not show the ledger's spend: $(cat "$E2E_TMP/lost")"
json 'sum(a.get("actual", {}).get("tokens", 0) for a in d)' < "$E2E_TMP/lost" | grep -qv '^0$' \
    || fail "the lost attempt records no tokens although its hold was charged: $(cat "$E2E_TMP/lost")"

# The steps' actual adds up to the ledger's spend for the task.
sp=$(ctl --json spend --task "$task")
for dim in tokens cost_uusd tool_calls; do
    steps=$(echo "$res" | json "sum(s.get('actual', {}).get('$dim', 0) for s in d['steps'])")
    ledger=$(echo "$sp" | json "d['total']['used']['$dim']")
    [ "$steps" -eq "$ledger" ] \
        || fail "steps' actual $dim add to $steps, the ledger has $ledger for $task"
done
# and each step's actual is the sum of its attempts
echo "$res" | json 'all(sum(a.get("actual", {}).get("tokens", 0) for a in s.get("attempts", [])) == s.get("actual", {}).get("tokens", 0) for s in d["steps"])' \
    | grep -q true || fail "a step's actual is not the sum of its attempts"
echo "lost_reply: ok (task $st; ledger $(echo "$sp" | json 'd["total"]["used"]'))"
