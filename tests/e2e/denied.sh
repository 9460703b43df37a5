#!/usr/bin/env bash
# A step the ledger denies is re-planned to a cheaper option. The planner
# estimates an LLM option's cost with a 60/40 input/output split, but an
# agent reserves its worst case: a short prompt and the rest of the hold as
# output, which output prices make dearer. With cto_agent's quota between
# the two, the plan's gpt-4o step is denied at reserve time; the
# orchestrator re-plans that step to a cheaper option, the task completes,
# and cto_agent's spend stays within its quota.
. "$(dirname "$0")/lib.sh"
: "${EMADS_TEST_LLM:?EMADS_TEST_LLM must name emads-test-llm}"
[ -x "$EMADS_TEST_LLM" ] || { echo "emads-test-llm not built: skipped"; exit 77; }

"$EMADS_TEST_LLM" --port-file "$E2E_TMP/port" --log "$E2E_TMP/llm.log" --usage 100,100 &
E2E_EXTRA_PIDS=$!
for i in $(seq 1 100); do [ -s "$E2E_TMP/port" ] && break; sleep 0.05; done
port=$(cat "$E2E_TMP/port")
sed -i "s|base_url: \"http://127.0.0.1:8080/v1\"|base_url: \"http://127.0.0.1:$port/v1\"|" "$E2E_CFG/emads.yaml"
export OPENAI_API_KEY=test-key
# gpt-4o, 3000 tokens: planned at 0.0165 USD, reserved at about 0.028 USD.
sed -i 's/^  cto_agent: .*/  cto_agent:      {max_tokens: 20000, max_latency_ms: 5000,  max_tool_calls: 10, max_cost_usd: 0.02}/' \
    "$E2E_CFG/agents_budget.yaml"

ctl up >/dev/null
"$EMADSCTL" --home "$E2E_RUN" --config "$E2E_CFG/emads.yaml" watch --json >"$E2E_TMP/events" 2>/dev/null &
E2E_EXTRA_PIDS="$E2E_EXTRA_PIDS $!"
sleep 0.3
plan=$(ctl --json plan "Should we migrate billing to Kubernetes? Assess the risk.")
echo "$plan" | json '[(s["step"], s.get("model")) for s in d["steps"]]'
[ "$(echo "$plan" | json '[s.get("model") for s in d["steps"] if s["step"] == "cto_analysis"][0]')" = gpt-4o ] \
    || fail "the planner did not pick gpt-4o for cto_analysis; the test's premise is off"

out=$(ctl --json submit --wait "Should we migrate billing to Kubernetes? Assess the risk.") \
    || fail "the task did not complete: $out"
echo "$out" | json '[(s["step"], s["state"], s.get("path"), s.get("model")) for s in d["steps"]]'
task=$(echo "$out" | json 'd["task"]')
[ "$(echo "$out" | json 'd["state"]')" = done ] || fail "task not done"
cto=$(echo "$out" | json '[s for s in d["steps"] if s["step"] == "cto_analysis"][0]')
[ "$(echo "$cto" | json 'd["state"]')" = done ] || fail "cto_analysis not done: $cto"
echo "$cto" | json 'd.get("model") != "gpt-4o"' | grep -q true \
    || fail "cto_analysis still ran on gpt-4o: $cto"
[ "$(echo "$cto" | json 'd.get("attempt")')" = 2 ] || fail "cto_analysis was not re-planned after the denial: $cto"
grep -q '"alert.denied"' "$E2E_TMP/events" || fail "no alert.denied event was published"

sp=$(ctl --json spend --task "$task")
echo "$sp" | json '[(a["name"], a["used"]["cost_uusd"], a["limit"]["cost_uusd"]) for a in d["agents"]]'
echo "$sp" | json 'all(a["used"][k] <= a["limit"][k] for a in d["agents"] for k in a["used"] if a["limit"][k] >= 0)' \
    | grep -q true || fail "an agent exceeded its quota"
echo "denied: ok"
