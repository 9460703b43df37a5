#!/usr/bin/env bash
# A step the ledger denies is re-planned. The planner charges each option
# what its agent will reserve, so a plan fits the task's and the agents'
# budgets; what it cannot see is spend elsewhere on a shared account. Here
# the team-wide (global) account is small: six tasks submitted at once each
# plan gpt-4o steps that hold 0.03 USD apiece, which the global account
# cannot carry for all of them. Some reserve is refused (exceeds_budget on
# the global account); the orchestrator re-plans that step to another
# option. Every task ends done or budget_exhausted (none failed) and the
# global account never passes its limit.
. "$(dirname "$0")/lib.sh"
: "${EMADS_TEST_LLM:?EMADS_TEST_LLM must name emads-test-llm}"
[ -x "$EMADS_TEST_LLM" ] || { echo "emads-test-llm not built: skipped"; exit 77; }

e2e_llm_server --usage 100,100
# 0.05 USD a day for everyone: fewer than two gpt-4o holds at once.
GLOBAL_UUSD=50000
edit_cfg "$E2E_CFG/emads.yaml" 's/^  global: .*/  global: {period: day, max_cost_usd: 0.05}/'
grep -q '^  global: {period: day, max_cost_usd: 0.05}' "$E2E_CFG/emads.yaml" \
    || fail "could not set the global account in emads.yaml"

ctl up >/dev/null
text="Should we migrate billing to Kubernetes? Assess the risk."
plan=$(ctl --json plan "$text")
echo "plan: $(echo "$plan" | json '[(s["step"], s.get("model"), s.get("est", {}).get("cost_uusd")) for s in d["steps"]]')"
echo "$plan" | json 'any(s.get("model") == "gpt-4o" for s in d["steps"])' | grep -q true \
    || fail "the planner picked no gpt-4o step; the test's premise is off"

# One batch: N tasks at once; sets `replanned` to the number of steps
# re-planned after a denial on exceeds_budget.
N=6
batch() {
    local b=$1 pids="" i t st denied=0 n
    for i in $(seq 1 $N); do
        ctl submit "$text (batch $b, #$i)" >"$E2E_TMP/submit.$b.$i" &
        pids="$pids $!"
    done
    for p in $pids; do wait "$p" || fail "a submit failed"; done
    for i in $(seq 1 $N); do
        t=$(cat "$E2E_TMP/submit.$b.$i")
        echo "$t" | grep -q '^t-[0-9a-f]\{12\}$' || fail "submit $i printed '$t'"
        st=$(wait_final "$t" 60)
        ctl --json result "$t" >"$E2E_TMP/result.$b.$i"
        echo "batch $b task $t: $st $(json '[(s["step"], s["state"], s.get("model"), [(a.get("model"), (a.get("error") or {}).get("code")) for a in s.get("attempts", [])]) for s in d["steps"]]' <"$E2E_TMP/result.$b.$i")"
        case $st in
            done | budget_exhausted) ;;
            *) fail "task $t ended $st" ;;
        esac
        # a denied attempt (exceeds_budget) with a later attempt of the same step
        n=$(json 'sum(1 for s in d["steps"] for k, a in enumerate(s.get("attempts", [])) if isinstance(a.get("error"), dict) and a["error"].get("code") == "exceeds_budget" and k + 1 < len(s["attempts"]))' \
            <"$E2E_TMP/result.$b.$i")
        denied=$((denied + n))
    done
    replanned=$denied
}

replanned=0
for b in 1 2 3; do
    batch "$b"
    sp=$(ctl --json spend)
    echo "batch $b: steps re-planned after a denial: $replanned; global: $(echo "$sp" | json 'd["global"]')"
    echo "$sp" | json 'd["global"] is not None' | grep -q true || fail "no global account in spend"
    used=$(echo "$sp" | json 'd["global"]["used"]["cost_uusd"]')
    limit=$(echo "$sp" | json 'd["global"]["limit"]["cost_uusd"]')
    [ "$limit" -eq "$GLOBAL_UUSD" ] || fail "global limit is $limit, configured $GLOBAL_UUSD"
    [ "$used" -le "$limit" ] || fail "the global account spent $used > its limit $limit"
    [ "$replanned" -gt 0 ] && break
    echo "batch $b: no step was denied and re-planned (timing); trying again"
done
[ "$replanned" -gt 0 ] || fail "in 3 batches no step was denied (exceeds_budget) and re-planned"
echo "denied: ok"
