#!/usr/bin/env bash
# cancel: a task whose analyses are in flight (the test LLM server answers
# after 1 s) shows `cancelled` at once; the steps in flight finish and are
# recorded with their spend (the ledger's equals theirs), nothing new starts
# (reconcile never runs), nothing stays held, and cancelling again or an
# unknown id behaves as documented.
. "$(dirname "$0")/lib.sh"
[ -x "${EMADS_TEST_LLM:-}" ] || { echo "emads-test-llm not built: skipped"; exit 77; }
e2e_llm_server --scenario slow:1000
ctl up >/dev/null

task=$(ctl submit "Should we migrate billing to Kubernetes? Assess the risk.")
for i in $(seq 1 100); do
    st=$(ctl --json result "$task" | json 'd["steps"][1]["state"]')
    [ "$st" = running ] && break
    sleep 0.03
done
[ "$st" = running ] || fail "cto_analysis never ran"
out=$(ctl cancel "$task")
[ "$out" = "task $task cancelled" ] || fail "cancel printed '$out'"
[ "$(ctl --json result "$task" | json 'd["state"]')" = cancelled ] || fail "state is not cancelled at once"
sleep 1.5 # the analyses in flight finish
res=$(ctl --json result "$task")
echo "$res" | json '[(s["step"], s["state"], s.get("attempt")) for s in d["steps"]]'
[ "$(echo "$res" | json 'd["steps"][3]["attempt"]')" -eq 0 ] || fail "reconcile started after the cancel"
[ "$(echo "$res" | json 'd["steps"][1]["state"] + "/" + d["steps"][2]["state"]')" = done/done ] \
    || fail "the analyses in flight were not recorded"
sp=$(ctl --json spend --task "$task")
for k in tokens cost_uusd; do
    steps=$(echo "$res" | json "sum(s.get('actual', {}).get('$k', 0) for s in d['steps'])")
    ledger=$(echo "$sp" | json "sum(a['used']['$k'] for a in d['agents'])")
    [ "$steps" -eq "$ledger" ] || fail "$k: steps recorded $steps, ledger spent $ledger"
    [ "$steps" -gt 0 ] || fail "$k: the analyses spent nothing"
done
echo "$res" | json 'd["reason"]' | grep -q "cancelled by emadsctl" || fail "reason does not say who cancelled"
[ "$(ctl --json spend --task "$task" | json 'sum(d["total"]["held"].values())')" -eq 0 ] || fail "holds left"
[ "$(ctl cancel "$task")" = "task $task cancelled" ] || fail "second cancel"
set +e
ctl cancel t-000000000000 2>/dev/null; rc=$?
set -e
[ $rc -eq 1 ] || fail "cancel of an unknown task: exit $rc, want 1"
echo "cancel: ok"
