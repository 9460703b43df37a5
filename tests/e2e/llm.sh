#!/usr/bin/env bash
# The LLM path against the test OpenAI server (emads-test-llm, fixed usage
# of 1000 prompt + 1000 completion tokens per call). (1) With the default
# budgets the LLM options are affordable and chosen, and the ledger's spend
# equals the server's usage times the configured prices. (2) With a tight
# total_task_budget the later steps degrade to the smaller model or the
# local path and the task stays within its budget.
. "$(dirname "$0")/lib.sh"
: "${EMADS_TEST_LLM:?EMADS_TEST_LLM must name emads-test-llm}"
[ -x "$EMADS_TEST_LLM" ] || { echo "emads-test-llm not built: skipped"; exit 77; }

e2e_llm_server --usage 1000,1000

# USD per million tokens -> micro-USD for 1000 + 1000 tokens, per model.
expected_cost() {
    python3 - "$E2E_TMP/llm.log" <<'PY'
import json, sys
price = {"gpt-4o": (2.50, 10.00), "gpt-4o-mini": (0.15, 0.60)}
total = 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["status"] != 200:
        continue
    pin, pout = price[r["model"]]
    total += -(-(1000 * round(pin * 1e6) + 1000 * round(pout * 1e6)) // 1000000)
print(total)
PY
}

ctl up >/dev/null
out=$(ctl --json submit --wait "Should we migrate billing to Kubernetes? Assess the risk.") || fail "LLM task failed"
task=$(echo "$out" | json 'd["task"]')
echo "$out" | json '[(s["step"], s["state"], s.get("path"), s.get("model")) for s in d["steps"]]'
[ "$(echo "$out" | json 'sum(1 for s in d["steps"] if s.get("path") == "llm")')" -ge 3 ] \
    || fail "LLM options not chosen although affordable"
# every LLM attempt records the model the provider served and its finish reason
echo "$out" | json 'all(a.get("served_model") == s["model"] and a.get("finish_reason") == "stop" for s in d["steps"] if s.get("path") == "llm" for a in s["attempts"][-1:])' \
    | grep -q true || fail "served model / finish reason not recorded: $(echo "$out" | json '[s.get("attempts") for s in d["steps"]]')"
calls=$(grep -c '"status":200' "$E2E_TMP/llm.log")
sp=$(ctl --json spend --task "$task")
cost=$(echo "$sp" | json 'd["total"]["used"]["cost_uusd"]')
tokens=$(echo "$sp" | json 'd["total"]["used"]["tokens"]')
want=$(expected_cost)
[ "$tokens" -eq $((calls * 2000)) ] || fail "ledger tokens $tokens, server usage $((calls * 2000))"
[ "$cost" -eq "$want" ] || fail "ledger cost $cost uUSD, usage x prices $want uUSD"
echo "spend matches usage x prices: $calls calls, $tokens tokens, $cost uUSD"

# Tight: 3 cents per task. gpt-4o costs 1.25 cents per call here.
ctl down >/dev/null
edit_cfg "$E2E_CFG/agents_budget.yaml" 's/^  total_task_budget:.*/  total_task_budget: {max_tokens: 200000, max_cost_usd: 0.03}/'
: > "$E2E_TMP/llm.log"
ctl up >/dev/null
out=$(ctl --json submit --wait "Should we migrate billing to Kubernetes? Assess the risk.") || fail "tight task failed"
echo "$out" | json '[(s["step"], s["state"], s.get("path"), s.get("model")) for s in d["steps"]]'
task=$(echo "$out" | json 'd["task"]')
last=$(echo "$out" | json '[s for s in d["steps"] if s["step"] == "reconcile"][0]')
echo "$last" | json 'd.get("model") == "gpt-4o-mini" or d.get("path") == "local"' | grep -q true \
    || fail "reconcile did not degrade under a tight budget: $last"
cost=$(ctl --json spend --task "$task" | json 'd["total"]["used"]["cost_uusd"]')
[ "$cost" -le 30000 ] || fail "tight task spent $cost uUSD > 30000"
[ "$cost" -eq "$(expected_cost)" ] || fail "tight: ledger cost $cost, usage x prices $(expected_cost)"

# (3) A keyless local server (vLLM, Ollama): the provider names no
# api_key_env and no key is set anywhere. The agents report it usable, the
# orchestrator plans its LLM options, and the server is called without an
# Authorization header.
ctl down >/dev/null
edit_cfg "$E2E_CFG/agents_budget.yaml" 's/^  total_task_budget:.*/  total_task_budget: {max_tokens: 200000, max_cost_usd: 20.00}/'
edit_cfg "$E2E_CFG/emads.yaml" '/^    api_key_env: OPENAI_API_KEY/d'
unset OPENAI_API_KEY
: > "$E2E_TMP/llm.log"
ctl up >/dev/null
out=$(ctl --json submit --wait "Should we migrate billing to Kubernetes? Assess the risk.") || fail "keyless task failed"
[ "$(echo "$out" | json 'sum(1 for s in d["steps"] if s.get("path") == "llm")')" -ge 3 ] \
    || fail "a keyless provider was not used: $(echo "$out" | json '[(s["step"], s.get("path"), s.get("why")) for s in d["steps"]]')"
grep -q '"status":200' "$E2E_TMP/llm.log" || fail "the keyless server was not called"
! grep -q '"auth":true' "$E2E_TMP/llm.log" || fail "a key was sent to a keyless provider"
echo "keyless provider: called without a key"

# (4) A provider that reports no usage: the spend is estimated, and the text
# output marks it with ~ as the steps end and in the result table
curl -s -X POST -d '{"scenario": "nousage"}' "http://127.0.0.1:$E2E_LLM_PORT/control" >/dev/null
ctl submit --wait "Should we migrate billing to Kubernetes? Assess the risk." >"$E2E_TMP/text" \
    || fail "nousage task failed: $(cat "$E2E_TMP/text")"
grep -E '^  cto_analysis +cto_agent +done +llm gpt-4o +~[0-9]+ tok, .*, ~\$[0-9.]+$' "$E2E_TMP/text" >/dev/null \
    || fail "estimated spend not marked ~: $(cat "$E2E_TMP/text")"
task=$(sed -n 's/^task \(t-[0-9a-f]*\).*/\1/p' "$E2E_TMP/text" | head -n 1)
ctl result "$task" | grep -E '^cto_analysis +cto_agent +done +llm +gpt-4o +~[0-9]+ .* ~[0-9.]+$' >/dev/null \
    || fail "the result table does not mark estimated spend: $(ctl result "$task")"
echo "estimated spend marked ~"
echo "llm: ok"
