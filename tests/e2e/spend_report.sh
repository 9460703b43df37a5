#!/usr/bin/env bash
# Spend reports and run-time limits through emadsctl against a running
# constellation. (1) `spend --by model --since T` equals the sum of the
# steps charged since T (the tasks run after T, per `spend --task`), and
# leaves out the task run before; --csv has one line per group; `spend`
# shows cto_agent's day account and no limit for the agents without a
# period budget; `spend --by class` per class equals the sum of `spend
# --task` of that class's tasks (analysis and creative). (2)
# `budget set global` lowers the cap at once and `budget show` names who
# set it; `budget reset` returns to the configured value.
. "$(dirname "$0")/lib.sh"
: "${EMADS_TEST_LLM:?EMADS_TEST_LLM must name emads-test-llm}"
[ -x "$EMADS_TEST_LLM" ] || { echo "emads-test-llm not built: skipped"; exit 77; }

e2e_llm_server --usage 100,100
# a day budget for cto_agent: `spend` shows its current period
edit_cfg "$E2E_CFG/emads.yaml" 's/^  timezone: UTC$/  timezone: UTC\n  agents: {cto_agent: {period: {every: day, max_cost_usd: 5.00}}}/'
grep -q '^  agents: {cto_agent: {period' "$E2E_CFG/emads.yaml" || fail "could not set a period budget"
ctl up >/dev/null
text="Should we migrate billing to Kubernetes? Assess the risk."

before=$(ctl --json submit --wait "$text (before)" | json 'd["task"]') || fail "first task failed"
sleep 1.5 # since is taken to the second: every charge of the first task is before it
since=$(date -u +%Y-%m-%dT%H:%M:%SZ)
sleep 1
sum=0
tasks=
for i in 1 2; do
    t=$(ctl --json submit --wait "$text (#$i)" | json 'd["task"]') || fail "task $i failed"
    tasks="$tasks $t"
    c=$(ctl --json spend --task "$t" | json 'd["total"]["used"]["cost_uusd"]')
    h=$(ctl --json spend --task "$t" | json 'd["total"]["held"]["cost_uusd"]')
    [ "$h" -eq 0 ] || fail "task $t still holds $h"
    sum=$((sum + c))
done
[ "$sum" -gt 0 ] || fail "the tasks spent nothing; the test's premise is off"

sp=$(ctl --json spend)
echo "current period: $sp"
[ "$(echo "$sp" | json '[(a["name"], a["budget"], a["limit"]["cost_uusd"], a["used"]["cost_uusd"] > 0) for a in d["agents"] if a["name"] == "cto_agent"] == [("cto_agent", True, 5000000, True)]')" = true ] \
    || fail "spend does not show cto_agent's day account with its spend"
[ "$(echo "$sp" | json 'all(not a["budget"] and a["limit"]["cost_uusd"] == -1 for a in d["agents"] if a["name"] != "cto_agent")')" = true ] \
    || fail "spend shows a limit for an agent without a period budget"
# spend {current} is one query of its own: not with a task or an agent, and
# only a boolean
for body in '"current":true,"task":"'"$before"'"' '"current":true,"agent":"cto_agent"' '"current":"yes"'; do
    rep=$("$EMADS_BUS_PROBE" call --endpoint "ipc://$E2E_RUN/bus.sock" --home "$E2E_RUN" --name emadsctl \
        --service ledger --body-json "{\"v\":1,\"type\":\"spend\",$body}") || true
    [ "$(echo "$rep" | json 'd.get("code")')" = invalid ] || fail "spend {$body}: $rep"
done
cto_period=$(echo "$sp" | json '[a["period"] for a in d["agents"] if a["name"] == "cto_agent"][0]')
ctl spend | grep -q "^cto_agent  *$cto_period " || fail "spend table: no period row for cto_agent"

rep=$(ctl --json spend --by model --since "$since")
echo "report: $rep"
[ "$(echo "$rep" | json 'd["total"]["cost_uusd"]')" -eq "$sum" ] \
    || fail "spend --by model --since: $(echo "$rep" | json 'd["total"]["cost_uusd"]') != sum of the steps $sum"
[ "$(echo "$rep" | json 'sum(r["spent"]["cost_uusd"] for r in d["rows"])')" -eq "$sum" ] \
    || fail "the rows do not add up to the total"
all=$(ctl --json spend --by task | json "sum(r['spent']['cost_uusd'] for r in d['rows'] if r['group'] == '$before')")
[ "$all" -gt 0 ] || fail "the task before the range spent nothing by task"
rows=$(echo "$rep" | json 'len(d["rows"])')
csv=$(ctl spend --by model --since "$since" --csv)
echo "$csv"
[ "$(echo "$csv" | head -1 | cut -d, -f1-2)" = "model,steps" ] || fail "csv header"
[ "$(echo "$csv" | wc -l)" -eq $((rows + 1)) ] || fail "csv: one line per group"
set +e
ctl spend --since "$since" >/dev/null 2>&1; rc=$?
ctl spend --by model --since yesterday-ish >/dev/null 2>&1; rc2=$?
set -e
[ $rc -eq 2 ] && [ $rc2 -eq 2 ] || fail "usage errors: exit $rc, $rc2 (want 2)"

# --by class: two classes of tasks; each class's row is the sum of its
# tasks' spend --task
creative=$(ctl --json submit --wait "Write a slogan for our billing team" | json 'd["task"]') ||
    fail "the creative task failed"
declare -A want=()
ctl --json tasks --all >"$E2E_TMP/tasks.json"
for t in "$before" $tasks "$creative"; do
    cls=$(json "[r['class'] for r in d['tasks'] if r['task'] == '$t'][0]" <"$E2E_TMP/tasks.json")
    c=$(ctl --json spend --task "$t" | json 'd["total"]["used"]["cost_uusd"]')
    want[$cls]=$((${want[$cls]:-0} + c))
done
[ "${#want[@]}" -eq 2 ] || fail "want two classes of tasks, got: ${!want[*]}"
byclass=$(ctl --json spend --by class)
echo "by class: $byclass (want: $(for k in "${!want[@]}"; do printf '%s=%s ' "$k" "${want[$k]}"; done))"
for cls in "${!want[@]}"; do
    [ "${want[$cls]}" -gt 0 ] || fail "class $cls spent nothing: the comparison proves little"
    got=$(echo "$byclass" | json "sum(r['spent']['cost_uusd'] for r in d['rows'] if r['group'] == '$cls')")
    [ "$got" -eq "${want[$cls]}" ] || fail "spend --by class: $cls $got uUSD, its tasks' spend --task sum to ${want[$cls]}"
done
[ "$(echo "$byclass" | json 'len(d["rows"])')" -eq 2 ] || fail "spend --by class: other groups: $byclass"
ctl spend --by class | grep -q "^class  *STEPS" || fail "spend --by class table: $(ctl spend --by class)"

# run-time limits
ctl budget show | tee "$E2E_TMP/show1"
grep -q '^global .*config$' "$E2E_TMP/show1" || fail "global limit not shown from config"
ctl budget set global --max-cost-usd 0.000001 >/dev/null || fail "budget set failed"
src=$(ctl --json budget show | json '[(r["source"], r.get("set_by")) for r in d["limits"] if r["scope"] == "global"][0]')
[ "$src" = "('set', 'emadsctl')" ] || fail "budget show after set: $src"
set +e
out=$(ctl --json submit --wait "$text (capped)")
set -e
t=$(echo "$out" | json 'd["task"]')
denied=$(ctl --json result "$t" | json 'sum(1 for s in d["steps"] for a in s.get("attempts", []) if isinstance(a.get("error"), dict) and a["error"].get("code") == "exceeds_budget")')
llm=$(ctl --json result "$t" | json 'sum(1 for s in d["steps"] if s.get("path") == "llm" and s["state"] == "done")')
echo "capped task $t: $denied denial(s), $llm llm step(s)"
[ "$llm" -eq 0 ] || fail "an llm step ran under a global cap of one micro-dollar"
ctl budget reset global >/dev/null || fail "budget reset failed"
[ "$(ctl --json budget show | json '[r["source"] for r in d["limits"] if r["scope"] == "global"][0]')" = config ] \
    || fail "budget reset did not return to config"
echo "spend_report: ok"
