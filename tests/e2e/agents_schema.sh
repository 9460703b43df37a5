#!/usr/bin/env bash
# agents_schema.sh - every LLM answer is checked against the role's schema:
# the test server answers a JSON object without the cto role's effort_days
# (and the other roles' own keys). Each such answer is a failed attempt
# (provider_error naming the missing key), the orchestrator re-plans the
# step, and the result holds no invented values: none of the answer's
# content and no default filled in; the steps end on the local path and
# the LLM calls that were made are still charged.
. "$(dirname "$0")/lib.sh"
: "${EMADS_TEST_LLM:?EMADS_TEST_LLM must name emads-test-llm}"
[ -x "$EMADS_TEST_LLM" ] || { echo "emads-test-llm not built: skipped"; exit 77; }

e2e_llm_server --usage 500,200 \
    --content '{"summary": "CANNED-MARK", "risks": [], "dependencies": [], "decision": "proceed", "confidence": 0.99}'
ctl up >/dev/null
out=$(ctl --json submit --wait "Should we migrate billing to Kubernetes? Assess the risk.") ||
    fail "task failed: $out"
[ "$(echo "$out" | json 'd["state"]')" = done ] || fail "task not done: $out"
task=$(echo "$out" | json 'd["task"]')
res=$(ctl --json result "$task")
cto=$(echo "$res" | json '[s for s in d["steps"] if s["step"] == "cto_analysis"][0]')
[ "$(echo "$cto" | json 'd["attempts"][0]["path"]')" = llm ] || fail "the first attempt was not the LLM: $cto"
[ "$(echo "$cto" | json 'd["attempts"][0]["status"]')" = error ] || fail "a bad answer was accepted: $cto"
reason=$(echo "$cto" | json 'd["attempts"][0]["error"]["reason"]')
case $reason in
*"does not fit role cto's schema: missing key 'effort_days'"*) ;;
*) fail "first attempt's reason: $reason" ;;
esac
[ "$(echo "$cto" | json 'len(d["attempts"]) >= 2')" = true ] || fail "not re-planned: $cto"
[ "$(echo "$cto" | json 'd["state"] + " " + d["path"]')" = "done local" ] || fail "final attempt: $cto"
# no invented values: the answer's content appears nowhere in the result,
# and the reconciled confidence is not the model's 0.99
echo "$res" | grep -q CANNED-MARK && fail "the rejected answer's content leaked into the result"
[ "$(echo "$res" | json '[s["output"]["confidence"] for s in d["steps"] if s["step"] == "cto_analysis"][0] != 0.99')" = true ] ||
    fail "cto confidence is the rejected answer's"
calls=$(grep -c '"status":200' "$E2E_TMP/llm.log" || true)
[ "$calls" -ge 3 ] || fail "want the LLM tried for each step, got $calls calls"
tokens=$(ctl --json spend --task "$task" | json 'd["total"]["used"]["tokens"]')
[ "$tokens" -eq $((calls * 700)) ] || fail "ledger tokens $tokens, want $((calls * 700)) for $calls rejected calls"
echo "agents_schema: ok - $calls rejected answers charged, steps re-planned to the local path"
