#!/usr/bin/env bash
# Policy training in the running constellation, against the test LLM server
# (so options really differ in cost). (1) `emadsctl train --group 3
# --rounds 2` over two task texts ends, the policy's version rises and
# <run>/policy.json exists, the training tasks are in the ledger (and hidden
# from `tasks` unless --all) with no agent over its limits, `plan` scores
# with the learned policy, and `policy reset` brings back the prior (pi =
# softmax of log quality). (2) A tiny --budget-usd stops training cleanly on
# its budget (exit 0, "budget" in the output) before every group ran.
# (3) SIGKILL of the orchestrator in the middle of a run: after the restart
# the client has stopped with an error, and every sample of the run ends
# (those cut short: cancelled, naming the restart) instead of carrying on
# as ordinary tasks.
. "$(dirname "$0")/lib.sh"
: "${EMADS_TEST_LLM:?EMADS_TEST_LLM must name emads-test-llm}"
[ -x "$EMADS_TEST_LLM" ] || { echo "emads-test-llm not built: skipped"; exit 77; }

e2e_llm_server --usage 1000,1000

cat > "$E2E_TMP/tasks.txt" <<'T'
# training texts: one task per line
Should we migrate billing to Kubernetes? Assess the risk.

Evaluate whether to adopt a service mesh for internal traffic.
T

ctl up >/dev/null
v0=$(ctl --json policy show | json 'd["policies"][0]["version"]')
ctl plan "Should we adopt Rust for the billing service? Assess the risk." | grep -q "step scores: prior" \
    || fail "plan does not say it scores from the prior before training"

# ---- (1) a full run -------------------------------------------------------
out=$(timeout 90 "$EMADSCTL" --home "$E2E_RUN" --config "$E2E_CFG/emads.yaml" \
      train --tasks "$E2E_TMP/tasks.txt" --group 3 --rounds 2 --seed 11) || fail "train failed: $out"
echo "$out"
echo "$out" | grep -q "^round 2/2 text 2/2" || fail "no progress line for the last group"
echo "$out" | grep -q "training finished" || fail "training did not finish"
echo "$out" | grep -q "mean reward per round" || fail "no reward curve"

pol=$(ctl --json policy show)
v1=$(echo "$pol" | json 'd["policies"][0]["version"]')
[ "$v1" -gt "$v0" ] || fail "policy version $v1 not above $v0 after training"
[ -s "$E2E_RUN/policy.json" ] || fail "no policy.json in the run directory"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["format"]=="emads-policy"; assert d["policies"][0]["version"]>0' \
    "$E2E_RUN/policy.json" || fail "policy.json does not hold the trained policy"
ctl plan "Should we adopt Rust for the billing service? Assess the risk." | grep -q "step scores: learned policy" \
    || fail "plan does not use the learned policy"

# The training tasks: 2 rounds x 2 texts x 3 samples, hidden from `tasks`.
all=$(ctl --json tasks --all --limit 100)
n=$(echo "$all" | json 'sum(1 for t in d["tasks"] if t.get("training"))')
[ "$n" -eq 12 ] || fail "expected 12 training tasks, tasks --all lists $n"
[ "$(ctl --json tasks --limit 100 | json 'sum(1 for t in d["tasks"] if t["task"].startswith("tr-"))')" -eq 0 ] \
    || fail "training tasks listed without --all"
spent=0
for t in $(echo "$all" | json '" ".join(t["task"] for t in d["tasks"] if t.get("training"))'); do
    sp=$(ctl --json spend --task "$t") || fail "ledger has no spend for training task $t"
    echo "$sp" | json 'all(a["used"][k] <= a["limit"][k] for a in d["agents"] for k in a["used"] if a["limit"][k] >= 0)' \
        | grep -q true || fail "an agent exceeded its limits in training task $t: $sp"
    spent=$((spent + $(echo "$sp" | json 'd["total"]["used"]["cost_uusd"]')))
done
[ "$spent" -gt 0 ] || fail "the training tasks spent nothing (LLM options never ran)"
echo "training tasks spent $spent uUSD in the ledger"

# ---- reset ---------------------------------------------------------------
ctl policy reset >/dev/null || fail "policy reset failed"
ctl --json policy show | python3 -c '
import json, math, sys
d = json.load(sys.stdin)
for p in d["policies"]:
    assert not p["learned"], "still learned after reset"
    for s in p["steps"]:
        z = sum(o["prior_q"] for o in s["options"])
        for o in s["options"]:
            for b in o["buckets"]:
                assert abs(b["pi"] - o["prior_q"] / z) < 1e-6, (s["step"], o["label"], b, z)
' || fail "policy reset did not restore the prior"
ctl plan "Should we adopt Rust for the billing service? Assess the risk." | grep -q "step scores: prior" \
    || fail "plan still uses a learned policy after reset"

# ---- (2) a tiny training budget -------------------------------------------
rc=0
out=$(timeout 60 "$EMADSCTL" --home "$E2E_RUN" --config "$E2E_CFG/emads.yaml" \
      train --tasks "$E2E_TMP/tasks.txt" --group 3 --rounds 3 --budget-usd 0.10 --seed 5) || rc=$?
echo "$out"
[ "$rc" -eq 0 ] || fail "budget-limited training exited $rc"
echo "$out" | grep -q "budget" || fail "no mention of the budget when training stopped"
groups=$(echo "$out" | sed -n 's/.*: \([0-9]*\) groups (.*/\1/p' | tail -1)
[ -n "$groups" ] && [ "$groups" -lt 6 ] || fail "budget-limited training ran $groups of 6 groups"

# ---- (3) the orchestrator killed mid-run ------------------------------------
# Answers now take 0.8 s, so the samples are surely running at the kill; the
# budget is large enough that the run cannot end on it first.
curl -s -X POST "http://127.0.0.1:$E2E_LLM_PORT/control" \
    -d '{"scenario":"slow:800","usage":[1000,1000]}' >/dev/null || fail "cannot slow the test server"
"$EMADSCTL" --home "$E2E_RUN" --config "$E2E_CFG/emads.yaml" \
    train --tasks "$E2E_TMP/tasks.txt" --group 3 --rounds 40 --budget-usd 5 --seed 3 \
    >"$E2E_TMP/train3.out" 2>&1 &
tp=$!
E2E_EXTRA_PIDS="${E2E_EXTRA_PIDS:-} $tp"
before=$(ctl --json tasks --all --limit 500 | json 'sum(1 for t in d["tasks"] if t.get("training"))')
for i in $(seq 1 100); do
    now=$(ctl --json tasks --all --limit 500 | json 'sum(1 for t in d["tasks"] if t.get("training"))')
    [ "$now" -gt "$before" ] && break
    sleep 0.05
done
[ "$now" -gt "$before" ] || fail "the third training run started no sample"
kill -9 "$(cat "$E2E_RUN/pids/emads-orchestrator.pid")"
ctl up >/dev/null || fail "up after the kill failed"
rc=0
timeout 60 tail --pid "$tp" -f /dev/null || fail "the train client did not stop after the restart"
wait "$tp" || rc=$?
cat "$E2E_TMP/train3.out"
[ "$rc" -ne 0 ] || fail "the train client exited 0 although its run ended with the orchestrator"
for i in $(seq 1 300); do
    open=$(ctl --json tasks --all --limit 500 |
        json 'sum(1 for t in d["tasks"] if t.get("training") and t["state"] not in ("done", "failed", "budget_exhausted", "cancelled"))')
    [ "$open" -eq 0 ] && break
    sleep 0.1
done
[ "$open" -eq 0 ] || fail "$open training samples still unfinished after the restart"
cut=0
for t in $(ctl --json tasks --all --limit 500 | json '" ".join(t["task"] for t in d["tasks"] if t.get("training") and t["state"] == "cancelled")'); do
    ctl --json result "$t" | json 'd.get("reason", "")' | grep -q "orchestrator restart" ||
        fail "sample $t cancelled without naming the restart: $(ctl --json result "$t")"
    sp=$(ctl --json spend --task "$t") || fail "ledger has no spend for $t"
    [ "$(echo "$sp" | json 'sum(d["total"]["held"].values())')" -eq 0 ] || fail "$t: holds left: $sp"
    cut=$((cut + 1))
done
[ "$cut" -gt 0 ] || fail "no sample was cut short by the restart"
echo "restart mid-training: $cut samples cancelled, client exit $rc"
echo "train: ok"
