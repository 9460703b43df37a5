#!/usr/bin/env bash
# A step whose reply is lost after its agent reserved: the only cto_agent is
# SIGKILLed while its LLM call is in flight (emads-test-llm slow:MS), so the
# step gets worker_lost instead of a step_result, and the agent's hold stays
# open until close_task charges it in full. After the task ends, the lost
# attempt shows the ledger's charge (measured "ledger") marked
# awaiting_commit (the result names its step: the whole hold is charged
# until the commit lands), and the steps' actual (tokens, cost, tool calls)
# adds up to the ledger's spend for the task. Then the agent's commit
# arrives late (sent here with the bus probe, as cto_agent, for the hold
# the close charged): the ledger replaces the whole-hold charge with it,
# the orchestrator re-settles the ended task's result, which again equals
# `spend --task` and awaits nothing; the `submit --wait` that followed the
# task waited for it and printed those totals, not provisional.
# With LOST_REPLY_LATE=void (e2e_lost_reply_void) the agent's late word is a
# void instead (nothing was spent): the ledger refunds the whole-hold
# charge, publishes spend.late, and the result is re-settled the same way.
late_kind=${LOST_REPLY_LATE:-commit}
. "$(dirname "$0")/lib.sh"
: "${EMADS_TEST_LLM:?EMADS_TEST_LLM must name emads-test-llm}"
: "${EMADS_BUS_PROBE:?EMADS_BUS_PROBE must name tests/bus/bus_probe}"
[ -x "$EMADS_TEST_LLM" ] || { echo "emads-test-llm not built: skipped"; exit 77; }

e2e_llm_server --usage 1000,1000 --scenario slow:6000
port=$E2E_LLM_PORT

ctl up >/dev/null
EP="ipc://$E2E_RUN/bus.sock"
# the hold the close charges in full is announced as alert.expired
"$EMADS_BUS_PROBE" listen --endpoint "$EP" --home "$E2E_RUN" --name emadsctl \
    --prefix alert.expired --count 1 --timeout 60000 >"$E2E_TMP/expired" 2>/dev/null &
E2E_EXTRA_PIDS="${E2E_EXTRA_PIDS:-} $!"
agent=$(cat "$E2E_RUN/pids/cto_agent.pid")
# followed with submit --wait, whose totals must be the settled ones
ctl --json submit --wait "Should we migrate billing to Kubernetes? Assess the risk." \
    >"$E2E_TMP/wait.json" 2>/dev/null &
waiter=$!
E2E_EXTRA_PIDS="${E2E_EXTRA_PIDS:-} $waiter"
task=""
for _ in $(seq 1 100); do
    task=$(ctl --json tasks --limit 1 | json 'd["tasks"][0]["task"] if d["tasks"] else ""')
    [ -n "$task" ] && break
    sleep 0.05
done
[ -n "$task" ] || fail "the task was not submitted"

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

# The lost attempt was charged the whole hold (its commit has not arrived):
# the result says so, naming its step, until a late commit re-settles it.
json 'all(a.get("awaiting_commit") is True for a in d)' < "$E2E_TMP/lost" | grep -q true \
    || fail "the lost attempt is not marked awaiting its commit: $(cat "$E2E_TMP/lost")"
lost_steps=$(echo "$res" | json 'sorted(s["step"] for s in d["steps"] if any((a.get("error") or {}).get("code") == "worker_lost" for a in s.get("attempts", [])))')
[ "$(echo "$res" | json 'sorted(d.get("awaiting_commit", []))')" = "$lost_steps" ] ||
    fail "result.awaiting_commit is not the lost step ($lost_steps): $res"

# the late commit: 150 tokens, 2 uUSD instead of the whole hold (or the
# late void: nothing)
for _ in $(seq 1 100); do grep -q '"body"' "$E2E_TMP/expired" && break; sleep 0.05; done
hold=$(grep '"body"' "$E2E_TMP/expired" | head -n 1 | json 'd["body"]["hold_id"]') ||
    fail "no alert.expired for the lost hold: $(cat "$E2E_TMP/expired")"
before=$(ctl --json spend --task "$task" | json "d['total']['used']['tokens']")
if [ "$late_kind" = void ]; then
    late=$("$EMADS_BUS_PROBE" call --endpoint "$EP" --home "$E2E_RUN" --name cto_agent --service ledger \
        --body-json "{\"v\":1,\"type\":\"void\",\"request_id\":\"late-void\",\"hold_id\":\"$hold\"}")
    echo "$late" | json 'd["type"] == "void_ok" and d.get("late") is True' | grep -q true ||
        fail "the late void: $late"
else
    late=$("$EMADS_BUS_PROBE" call --endpoint "$EP" --home "$E2E_RUN" --name cto_agent --service ledger \
        --body-json "{\"v\":1,\"type\":\"commit\",\"request_id\":\"late-commit\",\"hold_id\":\"$hold\",\"measured\":\"provider\",\"actual\":{\"tokens\":150,\"latency_ms\":100,\"tool_calls\":0,\"cost_uusd\":2}}")
    echo "$late" | json 'd["type"] == "commit_ok" and d.get("late") is True' | grep -q true ||
        fail "the late commit: $late"
fi
after=$(ctl --json spend --task "$task" | json "d['total']['used']['tokens']")
[ "$after" -lt "$before" ] || fail "the late $late_kind did not lower the task's spend ($before -> $after tokens)"
agree=no
for _ in $(seq 1 30); do
    res=$(ctl --json result "$task")
    sp=$(ctl --json spend --task "$task")
    agree=yes
    for dim in tokens cost_uusd tool_calls; do
        steps=$(echo "$res" | json "sum(s.get('actual', {}).get('$dim', 0) for s in d['steps'])")
        ledger=$(echo "$sp" | json "d['total']['used']['$dim']")
        [ "$steps" -eq "$ledger" ] || agree="no: $dim steps $steps, ledger $ledger"
    done
    [ "$agree" = yes ] && break
    sleep 0.05
done
[ "$agree" = yes ] || fail "after the late $late_kind the result disagrees with spend --task ($agree): result $res; spend $sp"
echo "$res" | json 'any(s.get("resettled") for s in d["steps"])' | grep -q true ||
    fail "no step is marked re-settled: $res"
[ "$(echo "$res" | json '"awaiting_commit" in d or any(a.get("awaiting_commit") for s in d["steps"] for a in s.get("attempts", []))')" = false ] ||
    fail "still awaiting a commit after it was re-settled: $res"

# submit --wait waited for the commit (it came within its 15 s) and printed
# the re-settled totals, final, not the whole-hold charge
wait "$waiter" || true
for dim in tokens cost_uusd tool_calls; do
    waited=$(json "sum(s.get('actual', {}).get('$dim', 0) for s in d['steps'])" <"$E2E_TMP/wait.json") ||
        fail "submit --wait printed no result: $(cat "$E2E_TMP/wait.json")"
    ledger=$(echo "$sp" | json "d['total']['used']['$dim']")
    [ "$waited" -eq "$ledger" ] || fail "submit --wait: steps' $dim $waited, the ledger $ledger after the late commit"
done
[ "$(json 'd["provisional"]' <"$E2E_TMP/wait.json")" = false ] ||
    fail "submit --wait marks re-settled totals provisional: $(cat "$E2E_TMP/wait.json")"
echo "lost_reply: ok (task $st; ledger $(echo "$sp" | json 'd["total"]["used"]'))"
