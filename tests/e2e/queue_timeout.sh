#!/usr/bin/env bash
# queue_timeout.sh - bus.queue_timeout_ms decides where a step waits for a
# free worker. cto_agent runs one step at a time (concurrency 1) and its LLM
# answers slowly (the test server's slow: scenario); two tasks are submitted at
# once, so one cto step holds the only worker when the other is sent.
#  - queue_timeout_ms large: the second step waits at the bus (its
#    emads_bus_queued_requests{service="cto_agent"} shows it) and is served
#    there: the bus answers no service_unavailable, the orchestrator queues
#    nothing, no attempt of either task failed.
#  - queue_timeout_ms 1: the bus answers the second step service_unavailable
#    (emads_bus_unavailable_total), the orchestrator queues the step and
#    sends it again (its log; the attempt with error service_unavailable in
#    `result`), and the task still ends done.
. "$(dirname "$0")/lib.sh"
[ -x "${EMADS_TEST_LLM:-}" ] || { echo "SKIP: no test LLM server"; exit 77; }

e2e_llm_server --scenario slow:2000
python3 - "$E2E_CFG/emads.yaml" <<'PY' || fail "the cto_agent concurrency edit did not match (above)"
import sys
p = sys.argv[1]; s = open(p).read()
old = "  cto_agent:\n    role: cto\n    instances: 1\n    concurrency: 4"
assert old in s, "no cto_agent block"
open(p, "w").write(s.replace(old, old[:-1] + "1"))
PY

TEXT="Should we migrate billing to Kubernetes?"


# step_state TASK STEP: the state of one step of a task in `result`.
step_state() {
    ctl --json result "$1" | json "[s[\"state\"] for s in d[\"steps\"] if s[\"step\"] == \"$2\"][0]"
}

# unavailable_attempts: attempts of the steps of tasks T1 and T2 that
# failed service_unavailable.
unavailable_attempts() {
    local n=0 t
    for t in "$T1" "$T2"; do
        n=$((n + $(ctl --json result "$t" |
            json 'sum(1 for s in d["steps"] for a in s.get("attempts", []) if a.get("error", {}).get("code") == "service_unavailable")')))
    done
    echo $n
}

# two_tasks: submit two tasks at once; their cto steps are sent within a
# moment of each other, while the first of them holds cto_agent's only
# worker for the slow answer. Sets T1 and T2.
two_tasks() {
    ctl --json submit "$TEXT (1)" >"$E2E_TMP/submit.1" &
    local p1=$!
    ctl --json submit "$TEXT (2)" >"$E2E_TMP/submit.2" || fail "submit 2"
    wait $p1 || fail "submit 1"
    T1=$(json 'd["task"]' <"$E2E_TMP/submit.1")
    T2=$(json 'd["task"]' <"$E2E_TMP/submit.2")
}

# ---- a long queue timeout: the second step waits at the bus ---------------
edit_cfg "$E2E_CFG/emads.yaml" 's/^  queue_timeout_ms: 3000 /  queue_timeout_ms: 60000 /'
ctl up >/dev/null || fail "up"
two_tasks
queued=0
for _ in $(seq 1 200); do
    queued=$(bus_metric 'emads_bus_queued_requests{service="cto_agent"}')
    [ "$queued" -ge 1 ] && break
    [ "$(step_state "$T1" cto_analysis)" = done ] && [ "$(step_state "$T2" cto_analysis)" = done ] && break
    sleep 0.05
done
[ "$queued" -ge 1 ] || fail "neither task's cto step was seen waiting at the bus"
for t in "$T1" "$T2"; do
    st=$(wait_final "$t" 90)
    [ "$st" = done ] || fail "task $t ended $st: $(ctl --json result "$t")"
done
[ "$(unavailable_attempts)" -eq 0 ] ||
    fail "service_unavailable attempts with a 60 s queue timeout: $(ctl --json result "$T1") $(ctl --json result "$T2")"
[ "$(bus_metric emads_bus_unavailable_total)" -eq 0 ] ||
    fail "the bus answered service_unavailable with a 60 s queue timeout"
! grep -q "found no free worker" "$E2E_RUN/logs/emads-orchestrator.log" ||
    fail "the orchestrator queued a step with a 60 s queue timeout"
echo "ok: with queue_timeout_ms 60000 the second step waited at the bus and was served there"
ctl down >/dev/null || fail "down"

# ---- a 1 ms queue timeout: the bus refuses, the orchestrator resends ------
edit_cfg "$E2E_CFG/emads.yaml" 's/^  queue_timeout_ms: 60000 /  queue_timeout_ms: 1 /'
ctl up >/dev/null || fail "up (2)"
two_tasks
for t in "$T1" "$T2"; do
    st=$(wait_final "$t" 90)
    [ "$st" = done ] || fail "task $t ended $st: $(ctl --json result "$t")"
done
n=$(unavailable_attempts)
[ "$n" -ge 1 ] || fail "no service_unavailable attempt: $(ctl --json result "$T1") $(ctl --json result "$T2")"
[ "$(bus_metric emads_bus_unavailable_total)" -ge "$n" ] ||
    fail "the bus counted fewer service_unavailable answers than the tasks show ($n)"
grep -q -E "task ($T1|$T2): step cto_analysis found no free worker of cto_agent; queued" \
    "$E2E_RUN/logs/emads-orchestrator.log" || fail "the orchestrator queued no cto step"
echo "ok: with queue_timeout_ms 1 the bus answered service_unavailable $n time(s) and the orchestrator resent the step"
echo "queue_timeout: ok"
