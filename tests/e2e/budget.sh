#!/usr/bin/env bash
# Budgets decide the plan. (1) A total_task_budget too small in tokens for
# any LLM option: every step degrades to the local path and the task still
# completes. (2) A total_task_budget too small for any plan (a 5 ms
# deadline): `plan` says so and names the binding constraint, and the task
# ends budget_exhausted with that constraint in its reason while nothing
# runs and nothing is spent.
. "$(dirname "$0")/lib.sh"
B="$E2E_CFG/agents_budget.yaml"

edit_cfg "$B" 's/^  total_task_budget:.*/  total_task_budget: {max_tokens: 10, max_cost_usd: 20.00}/'
ctl up >/dev/null

ctl plan "Should we migrate billing to Kubernetes?" | tee "$E2E_TMP/plan1"
grep -q "llm" "$E2E_TMP/plan1" && fail "plan uses an LLM option with a 10-token task budget"
out=$(ctl --json submit --wait "Should we migrate billing to Kubernetes?") || fail "task did not complete"
[ "$(echo "$out" | json 'd["state"]')" = done ] || fail "tight task not done"
[ "$(echo "$out" | json 'all(s["path"] == "local" for s in d["steps"] if s["state"] == "done")')" = true ] \
    || fail "a step ran off the local path under a 10-token budget"

ctl down >/dev/null
edit_cfg "$B" 's/^  total_task_budget:.*/  total_task_budget: {max_tokens: 10, max_latency_ms: 5, max_cost_usd: 20.00}/'
ctl up >/dev/null

set +e
p=$(ctl --json plan "Should we migrate billing to Kubernetes?"); rc=$?
set -e
[ $rc -eq 1 ] || fail "infeasible plan: exit $rc, want 1"
[ "$(echo "$p" | json 'd["feasible"]')" = false ] || fail "plan says feasible"
echo "$p" | json 'd["binding"]' | grep -q "latency_ms" || fail "binding does not name latency: $p"

set +e
out=$(ctl --json submit --wait "Should we migrate billing to Kubernetes?"); rc=$?
set -e
echo "$out"
[ $rc -eq 1 ] || fail "budget_exhausted task: exit $rc, want 1"
[ "$(echo "$out" | json 'd["state"]')" = budget_exhausted ] || fail "state is not budget_exhausted"
echo "$out" | json 'd["reason"]' | grep -q "latency_ms" || fail "reason does not name the binding constraint"
[ "$(echo "$out" | json 'sum(s.get("attempt", 0) for s in d["steps"])')" -eq 0 ] || fail "a step ran"
task=$(echo "$out" | json 'd["task"]')
sp=$(ctl --json spend --task "$task")
[ "$(echo "$sp" | json 'sum(sum(a["used"].values()) + sum(a["held"].values()) for a in d["agents"])')" -eq 0 ] \
    || fail "spend recorded for a task where nothing ran"
echo "budget: ok"
