#!/usr/bin/env bash
# A failing and a slow provider (emads-test-llm scenarios 500 and slow:MS,
# the latter longer than the step's latency hold). The steps that fail on
# the LLM are re-planned (to the local path) and the task still ends done,
# its result saying which steps were degraded and why (text and --json);
# `result` keeps every attempt of a step, says in the step's why which
# model failed with which error before the re-plan, and the steps' actual
# spend (the sum over their attempts) equals the ledger's spend for the
# task, dimension by dimension.
. "$(dirname "$0")/lib.sh"
: "${EMADS_TEST_LLM:?EMADS_TEST_LLM must name emads-test-llm}"
[ -x "$EMADS_TEST_LLM" ] || { echo "emads-test-llm not built: skipped"; exit 77; }

e2e_llm_server --usage 1000,1000
port=$E2E_LLM_PORT

scenario() {
    curl -s -X POST -d "{\"scenario\": \"$1\"}" "http://127.0.0.1:$port/control" >/dev/null \
        || fail "cannot set scenario $1"
}

# check_task OUT: the task ended done, its steps' actual adds up to the
# ledger's spend, and a step that needed more than one attempt says why.
check_task() {
    local out=$1 label=$2 task sp
    echo "$out" | json '[(s["step"], s["state"], s.get("path"), s.get("model"), s.get("attempt"), s.get("why")) for s in d["steps"]]'
    [ "$(echo "$out" | json 'd["state"]')" = done ] || fail "$label: task not done"
    task=$(echo "$out" | json 'd["task"]')
    sp=$(ctl --json spend --task "$task")
    for dim in tokens cost_uusd tool_calls; do
        steps=$(echo "$out" | json "sum(s.get('actual', {}).get('$dim', 0) for s in d['steps'])")
        ledger=$(echo "$sp" | json "d['total']['used']['$dim']")
        [ "$steps" -eq "$ledger" ] \
            || fail "$label: steps' actual $dim add to $steps, the ledger has $ledger for $task"
    done
    echo "$label: steps' actual = ledger spend ($(echo "$sp" | json 'd["total"]["used"]'))"
    # every attempt is kept, and the step's actual is their sum
    echo "$out" | json 'all(len(s.get("attempts", [])) == s.get("attempt", 0) for s in d["steps"] if s["state"] != "skipped")' \
        | grep -q true || fail "$label: a step does not list all its attempts"
    echo "$out" | json 'all(sum(a.get("actual", {}).get("cost_uusd", 0) for a in s.get("attempts", [])) == s.get("actual", {}).get("cost_uusd", 0) for s in d["steps"])' \
        | grep -q true || fail "$label: a step's actual is not the sum of its attempts"
    # a re-planned step tells which model failed, and how
    echo "$out" | json '[s for s in d["steps"] if s.get("attempt", 0) > 1]' > "$E2E_TMP/retried"
    [ "$(json 'len(d)' < "$E2E_TMP/retried")" -ge 1 ] || fail "$label: no step was re-planned"
    json 'all("re-planned" in s.get("why", "") and "gpt-4o" in s.get("why", "") for s in d)' \
        < "$E2E_TMP/retried" | grep -q true || fail "$label: why hides the failed attempts: $(cat "$E2E_TMP/retried")"
    json 'all(s["planned_path"] == "llm" for s in d)' < "$E2E_TMP/retried" | grep -q true \
        || fail "$label: planned_path is not the first plan's"
}

ctl up >/dev/null
scenario 500
out=$(ctl --json submit --wait "Should we migrate billing to Kubernetes? Assess the risk.") || true
check_task "$out" "provider 500"
grep -q '"status":500' "$E2E_TMP/llm.log" || fail "the provider was not called"
# degraded, visibly: in --json and in the text result
echo "$out" | json 'len(d.get("degraded", [])) >= 1 and all("HTTP 500" in x["reason"] and x["ran"] == "local" for x in d["degraded"])' \
    | grep -q true || fail "the result does not say it was degraded: $(echo "$out" | json 'd.get("degraded")')"
task=$(echo "$out" | json 'd["task"]')
ctl result "$task" | grep -q '^degraded: cto_analysis planned llm gpt-4o, ran local: .*HTTP 500' \
    || fail "text result hides the degradation: $(ctl result "$task")"
# the agents now report the provider down: the next task is planned local
# at once, without calling it
: > "$E2E_TMP/llm.log"
out=$(ctl --json submit --wait "Should we migrate billing to Kubernetes? Assess the risk.") || fail "task after the outage"
[ ! -s "$E2E_TMP/llm.log" ] || fail "a provider reported down was called again at once"
ctl plan "Should we migrate billing to Kubernetes? Assess the risk." >"$E2E_TMP/plan" || fail "plan"
grep -q "^not planned: cto_agent's LLM options on local_openai: .*HTTP 500" "$E2E_TMP/plan" \
    || fail "plan does not say why the LLM is left out: $(cat "$E2E_TMP/plan")"
echo "$out" | json 'all(s.get("attempt", 0) <= 1 for s in d["steps"])' | grep -q true \
    || fail "steps were planned on a provider the agents reported down"

# fresh agents (their reports start empty) for the slow provider
ctl down >/dev/null
ctl up >/dev/null

scenario slow:4500
: > "$E2E_TMP/llm.log"
out=$(ctl --json submit --wait "Should we migrate billing to Kubernetes? Assess the risk.") || true
check_task "$out" "slow provider"
# a step's label is the least exact of its attempts': timed-out attempts
# charged their whole hold make the step whole_hold though it ended local,
# and the text result marks those amounts
echo "$out" | json 'all(s["measured"] == "whole_hold" for s in d["steps"] if any(a.get("measured") == "whole_hold" for a in s.get("attempts", [])))' \
    | grep -q true || fail "a step's measured hides its whole-hold attempts"
task=$(echo "$out" | json 'd["task"]')
ctl result "$task" | grep -E '^cto_analysis +cto_agent +done +local +- +hold [0-9]+ .* hold [0-9.]+$' >/dev/null \
    || fail "text result does not mark whole-hold amounts: $(ctl result "$task")"

# A bad key (401) and an unknown model (404): not retried, not degraded;
# the task fails with the provider's message and submit --wait exits non-zero
for case in 401 404; do
    if [ $case = 401 ]; then scenario 401; else
        curl -s -X POST -d '{"scenario": "usage", "models": "some-other-model"}' \
            "http://127.0.0.1:$port/control" >/dev/null || fail "control"
    fi
    : > "$E2E_TMP/llm.log"
    rc=0
    out=$(ctl --json submit --wait "Should we migrate billing to Kubernetes? Assess the risk.") || rc=$?
    [ $rc -ne 0 ] || fail "$case: submit --wait exited 0"
    [ "$(echo "$out" | json 'd["state"]')" = failed ] || fail "$case: task not failed: $out"
    want="Incorrect API key provided"
    [ $case = 401 ] || want="does not exist"
    echo "$out" | json 'd["reason"]' | grep -q "provider_rejected: .*$want" \
        || fail "$case: the reason hides the provider's message: $(echo "$out" | json 'd["reason"]')"
    echo "$out" | json '"degraded" not in d' | grep -q true || fail "$case: degraded"
    n=$(grep -c "\"status\":$case" "$E2E_TMP/llm.log")
    [ "$n" -le 2 ] || fail "$case: retried ($n calls)"
    task=$(echo "$out" | json 'd["task"]')
    rc=0
    ctl result "$task" >"$E2E_TMP/text" || rc=$?
    grep -q "$want" "$E2E_TMP/text" || fail "$case: text result hides the message: $(cat "$E2E_TMP/text")"
    echo "$case: task failed loudly: $(echo "$out" | json 'd["reason"]')"
done
# No key where the agents run: they report it, and plan says so (the
# orchestrator reads no key itself)
ctl down >/dev/null
unset OPENAI_API_KEY
ctl up >/dev/null
for _ in $(seq 1 50); do
    ctl plan "Should we migrate billing to Kubernetes? Assess the risk." >"$E2E_TMP/plan" || fail "plan"
    [ "$(grep -c '^not planned: ' "$E2E_TMP/plan")" = 3 ] && break
    sleep 0.1
done
grep -q '^not planned: coo_agent.s LLM options on local_openai: no API key in \$OPENAI_API_KEY' "$E2E_TMP/plan" \
    || fail "plan does not say the key is missing: $(cat "$E2E_TMP/plan")"
ctl --json plan "Should we migrate billing to Kubernetes? Assess the risk." \
    >"$E2E_TMP/plan.json" || fail "plan --json"
json 'all(s.get("path") != "llm" for s in d["steps"]) and len(d["not_planned"]) == 3' <"$E2E_TMP/plan.json" \
    | grep -q true || fail "LLM options planned without a key: $(cat "$E2E_TMP/plan.json")"
echo "provider_fail: ok"
