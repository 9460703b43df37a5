#!/usr/bin/env bash
# Twelve tasks at once under a team-wide (global) cap of 0.06 USD a day:
# the planner plans against every account a reserve touches (the task's, the
# agent's in the task, the global one), from the accounts the ledger's
# replies carry, so it does not plan what the ledger would deny. Asserts
# that the ledger refuses at most GLOBAL_CAP_MAX_DENIALS reserves over the
# twelve tasks, that the global account never passes its cap, and that every
# task ends done or budget_exhausted. Main before this change: 31 denials in
# each of two runs of this script (LLM usage 1000+400 tokens): bound 31 / 10.
. "$(dirname "$0")/lib.sh"
: "${EMADS_TEST_LLM:?EMADS_TEST_LLM must name emads-test-llm}"
[ -x "$EMADS_TEST_LLM" ] || { echo "emads-test-llm not built: skipped"; exit 77; }

# answers of ~400 tokens on a prompt of ~1000
e2e_llm_server --usage 1000,400
CAP_UUSD=60000
edit_cfg "$E2E_CFG/emads.yaml" 's/^  global: .*/  global: {period: day, max_cost_usd: 0.06}/'
MAX_DENIALS=${GLOBAL_CAP_MAX_DENIALS:-3}
N=12

ctl up >/dev/null
texts=("Should we migrate billing to Kubernetes? Assess the risk."
       "Assess the risk of moving our database to a managed service."
       "Should we rewrite the scheduler in Rust? Analyse the trade-offs.")
pids=""
for i in $(seq 1 $N); do
    ctl submit "${texts[$((i % 3))]} (#$i)" >"$E2E_TMP/submit.$i" &
    pids="$pids $!"
done
for p in $pids; do wait "$p" || fail "a submit failed"; done
llm=0
for i in $(seq 1 $N); do
    t=$(cat "$E2E_TMP/submit.$i")
    st=$(wait_final "$t" 90)
    ctl --json result "$t" >"$E2E_TMP/result.$i"
    echo "task $t: $st $(json '[(s["step"], s["state"], s.get("path"), s.get("model")) for s in d["steps"]]' <"$E2E_TMP/result.$i")"
    case $st in done | budget_exhausted) ;; *) fail "task $t ended $st" ;; esac
    n=$(json 'sum(1 for s in d["steps"] if s.get("path") == "llm")' <"$E2E_TMP/result.$i")
    llm=$((llm + n))
done
denials=$(e2e_ledger_denials)
sp=$(ctl --json spend)
used=$(echo "$sp" | json 'd["global"]["used"]["cost_uusd"]')
echo "global_cap_denials=$denials"
echo "global_cap_llm_steps=$llm"
echo "global_cap_used_uusd=$used"
[ "$used" -le "$CAP_UUSD" ] || fail "the global account spent $used uUSD > its cap $CAP_UUSD"
[ "$llm" -gt 0 ] || fail "no step used the LLM: the cap was not used at all"
[ "$denials" -le "$MAX_DENIALS" ] ||
    fail "the ledger refused $denials reserves (at most $MAX_DENIALS allowed): $(grep '^emads_ledger_denials_total' "$E2E_TMP/ledger.prom")"
echo "global_cap: ok"
