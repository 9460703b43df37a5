#!/usr/bin/env bash
# 20 tasks submitted at once all complete, and in none of them does any
# agent exceed its per-task quota in any dimension. With the test LLM server
# (when built) the steps spend real tokens and money against quotas tight
# enough that some steps must degrade: cto_agent may spend 5000 tokens per
# task, its two LLM steps would take 2 x 2000 plus the estimates' margins.
. "$(dirname "$0")/lib.sh"
if [ -x "${EMADS_TEST_LLM:-}" ]; then
    e2e_llm_server --usage 1000,1000
    edit_cfg "$E2E_CFG/agents_budget.yaml" \
        's/^  cto_agent: .*/  cto_agent:      {max_tokens: 5000, max_latency_ms: 5000, max_tool_calls: 10, max_cost_usd: 0.02}/'
fi
ctl up >/dev/null

texts=("Should we migrate billing to Kubernetes?" "search the latest news on GPU prices"
       "write a slogan for our launch" "calculate how many engineers we need"
       "what is our deployment process")
pids=""
for i in $(seq 1 20); do
    ctl submit "${texts[$((i % 5))]} (#$i)" > "$E2E_TMP/submit.$i" &
    pids="$pids $!"
done
for p in $pids; do wait "$p" || fail "a submit failed"; done

for i in $(seq 1 20); do
    t=$(cat "$E2E_TMP/submit.$i")
    echo "$t" | grep -q '^t-[0-9a-f]\{12\}$' || fail "submit $i printed '$t'"
    st=$(wait_final "$t" 90)
    [ "$st" = done ] || fail "task $t ended $st"
    ctl --json spend --task "$t" | json '[(a["name"], k) for a in d["agents"] for k in a["used"] if a["limit"][k] >= 0 and a["used"][k] > a["limit"][k]]' > "$E2E_TMP/over"
    [ "$(cat "$E2E_TMP/over")" = "[]" ] || fail "task $t: over quota: $(cat "$E2E_TMP/over")"
done
[ "$(ctl --json tasks --limit 100 --state done | json 'len(d["tasks"])')" -eq 20 ] || fail "tasks does not list 20 done tasks"
llm_steps=0
for i in $(seq 1 20); do
    n=$(ctl --json result "$(cat "$E2E_TMP/submit.$i")" | json 'sum(1 for s in d["steps"] if s.get("path") == "llm")')
    llm_steps=$((llm_steps + n))
done
echo "LLM steps over the 20 tasks: $llm_steps"
if [ -n "${OPENAI_API_KEY:-}" ]; then
    [ "$llm_steps" -gt 0 ] || fail "no step used the LLM although the test server answers"
fi
echo "concurrent: ok"
