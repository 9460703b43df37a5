#!/usr/bin/env bash
# submit --wait when it stops early, and the lines it prints. (1) Under
# --json a --wait that times out (exit 1) or is interrupted with SIGINT
# (exit 130) still prints {"task": ...} on stdout: the task goes on and a
# script keeps its id. (2) A step re-planned after its provider failed
# prints a "started" line for each attempt naming what that attempt ran
# (the local path the second time), not the first plan's model.
. "$(dirname "$0")/lib.sh"
: "${EMADS_TEST_LLM:?EMADS_TEST_LLM must name emads-test-llm}"
[ -x "$EMADS_TEST_LLM" ] || { echo "emads-test-llm not built: skipped"; exit 77; }

e2e_llm_server --usage 500,200
scenario() {
    curl -s -X POST -d "{\"scenario\": \"$1\"}" "http://127.0.0.1:$E2E_LLM_PORT/control" >/dev/null ||
        fail "cannot set scenario $1"
}
ctl up >/dev/null
text="Should we migrate billing to Kubernetes? Assess the risk."

# (1) timeout: the LLM answers after 2 s, --timeout is 1 s
scenario slow:2000
set +e
ctl --json submit --wait --timeout 1 "$text" >"$E2E_TMP/out" 2>"$E2E_TMP/err"
rc=$?
set -e
[ $rc = 1 ] || fail "--timeout exited $rc"
t=$(json 'd["task"]' <"$E2E_TMP/out") || fail "no task id on stdout after --timeout: '$(cat "$E2E_TMP/out")'"
echo "$t" | grep -q '^t-[0-9a-f]\{12\}$' || fail "task id '$t'"
[ "$(json 'd["following"]' <"$E2E_TMP/out")" = false ] || fail "stdout: $(cat "$E2E_TMP/out")"
[ "$(wait_final "$t" 30)" = done ] || fail "the task did not go on after --timeout"

# (1) SIGINT while following
ctl --json submit --wait "$text" >"$E2E_TMP/out2" 2>"$E2E_TMP/err2" &
pid=$!
E2E_EXTRA_PIDS="${E2E_EXTRA_PIDS:-} $pid"
for _ in $(seq 1 100); do
    [ "$(ctl --json tasks --state running | json 'len(d["tasks"])')" -ge 1 ] && break
    sleep 0.05
done
kill -INT "$(pgrep -P "$pid" emadsctl || echo "$pid")" 2>/dev/null || kill -INT "$pid"
set +e
wait "$pid"
rc=$?
set -e
[ $rc = 130 ] || fail "SIGINT: exit $rc; stderr: $(cat "$E2E_TMP/err2")"
t2=$(json 'd["task"]' <"$E2E_TMP/out2") || fail "no task id on stdout after SIGINT: '$(cat "$E2E_TMP/out2")'"
[ "$(wait_final "$t2" 30)" = done ] || fail "the task did not go on after SIGINT"

# (2) the provider fails: the re-planned attempt's started line names it
scenario 500
ctl submit --wait "$text" >"$E2E_TMP/text" 2>&1 || true
cat "$E2E_TMP/text"
grep -Eq '^  cto_analysis +cto_agent +started +llm gpt-4o( |$)' "$E2E_TMP/text" ||
    fail "no started line for the first attempt on gpt-4o"
grep -Eq '^  cto_analysis +cto_agent +started +local( |$)' "$E2E_TMP/text" ||
    fail "the re-planned attempt's started line does not name the local path"
echo "wait: ok"
