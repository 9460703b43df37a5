#!/usr/bin/env bash
# Degradation says why, and can be refused. A task submitted with a budget
# too small for gpt-4o runs its steps on a cheaper option; each such step's
# why says "budget forced ...", naming the account and the amounts, and the
# result lists it as degraded. With --on-exhaust fail the same task ends
# budget_exhausted instead, and a class with on_exhaust: fail does the same
# unless the submit says --on-exhaust degrade.
. "$(dirname "$0")/lib.sh"
: "${EMADS_TEST_LLM:?EMADS_TEST_LLM must name emads-test-llm}"
[ -x "$EMADS_TEST_LLM" ] || { echo "emads-test-llm not built: skipped"; exit 77; }

e2e_llm_server --usage 500,200
ctl up >/dev/null
text="Should we migrate billing to Kubernetes? Assess the risk."

# degrade (the default): done, with the reasons
out=$(ctl --json submit --wait --max-cost 0.005 "$text") || fail "the degraded task did not end done: $out"
echo "$out" | json '[(s["step"], s.get("path"), s.get("model"), s.get("why")) for s in d["steps"]]'
echo "$out" | json 'any((s.get("why") or "").startswith("budget forced ") and "the task has $0.005000 left, gpt-4o holds $0.030000" in s["why"] for s in d["steps"])' |
    grep -q true || fail "no step says the budget forced it: $out"
echo "$out" | json 'len(d.get("degraded", [])) > 0 and all(x["planned"] == "llm gpt-4o" and x["reason"].startswith("budget forced ") for x in d["degraded"])' |
    grep -q true || fail "the result lists no degraded step with its reason: $(echo "$out" | json 'd.get("degraded")')"
task=$(echo "$out" | json 'd["task"]')
ctl result "$task" | grep -q "^degraded: cto_analysis planned llm gpt-4o, ran .*: budget forced " ||
    fail "result does not print the degraded step: $(ctl result "$task")"

# fail: budget_exhausted, exit 1, the reason names the step and the account
set +e
out=$(ctl --json submit --wait --on-exhaust fail --max-cost 0.005 "$text")
rc=$?
set -e
[ $rc = 1 ] || fail "--on-exhaust fail exited $rc: $out"
[ "$(echo "$out" | json 'd["state"]')" = budget_exhausted ] || fail "state: $out"
echo "$out" | json 'd["reason"]' | grep -q "budget forced .*(on_exhaust fail)" || fail "reason: $out"
echo "$out" | json 'all(s["state"] in ("pending", "skipped") for s in d["steps"])' | grep -q true ||
    fail "a step ran although the task was to fail: $out"
# a task the budget does not constrain runs as usual under fail
out=$(ctl --json submit --wait --on-exhaust fail "$text") || fail "an unconstrained task failed: $out"

# bad values are usage errors
set +e
ctl submit --on-exhaust sometimes "$text" >/dev/null 2>"$E2E_TMP/err"
rc=$?
set -e
[ $rc = 2 ] || fail "--on-exhaust sometimes exited $rc"
grep -q "on-exhaust: 'sometimes': must be degrade or fail" "$E2E_TMP/err" || fail "message: $(cat "$E2E_TMP/err")"

# the class's policy: analysis fails unless the submit says degrade
ctl down >/dev/null
edit_cfg "$E2E_CFG/emads.yaml" '/^  analysis:$/a\    on_exhaust: fail'
ctl up >/dev/null
set +e
out=$(ctl --json submit --wait --max-cost 0.005 "$text")
rc=$?
set -e
[ $rc = 1 ] && [ "$(echo "$out" | json 'd["state"]')" = budget_exhausted ] ||
    fail "class on_exhaust fail: exit $rc, $out"
out=$(ctl --json submit --wait --on-exhaust degrade --max-cost 0.005 "$text") ||
    fail "--on-exhaust degrade did not override the class: $out"
echo "exhaust: ok"
