#!/usr/bin/env bash
# Events nobody subscribed are not sent: every emads process asks the bus
# for INTEREST and publishes only topics some client subscribed (PROTOCOL.md
# §5, "Interest"). A task run while nobody listens to task. and step. puts
# only the spend. events somebody subscribed (the orchestrator and a
# listener) on the bus; the same task run while a client listens to every topic puts
# every event on the bus, each delivered to that client.
. "$(dirname "$0")/lib.sh"
: "${EMADS_BUS_PROBE:?EMADS_BUS_PROBE must name tests/bus/bus_probe}"

ctl up >/dev/null
EP="ipc://$E2E_RUN/bus.sock"
prompt="Should we migrate billing to Kubernetes? Assess the risk."

# a task nobody watches but a listener of spend.: what it gets is all
# that should reach the bus (the orchestrator follows only spend.late)
"$EMADS_BUS_PROBE" listen --endpoint "$EP" --home "$E2E_RUN" --name emadsctl --prefix spend. \
    --count 10000 --timeout 20000 >"$E2E_TMP/spend" 2>/dev/null &
S=$!
E2E_EXTRA_PIDS="${E2E_EXTRA_PIDS:-} $S"
for _ in $(seq 1 100); do grep -q listening "$E2E_TMP/spend" && break; sleep 0.05; done
sleep 0.5
e0=$(bus_metric emads_bus_events_total)
t1=$(ctl --json submit "$prompt" | json 'd["task"]') || fail "submit"
[ "$(wait_final "$t1" 60)" = done ] || fail "task $t1 did not finish"
sleep 1 # the ledger's last spend.commit
e1=$(bus_metric emads_bus_events_total)
without=$((e1 - e0))
kill "$S" 2>/dev/null
spend1=$(grep -c '"topic": "spend\.' "$E2E_TMP/spend" || true)

# the same task while a client listens to every topic
"$EMADS_BUS_PROBE" listen --endpoint "$EP" --home "$E2E_RUN" --name emadsctl --prefix "" \
    --count 10000 --timeout 20000 >"$E2E_TMP/all" 2>/dev/null &
L=$!
E2E_EXTRA_PIDS="${E2E_EXTRA_PIDS:-} $L"
for _ in $(seq 1 100); do grep -q listening "$E2E_TMP/all" && break; sleep 0.05; done
sleep 0.5 # the subscription reaches the bus, and its INTEREST every process
e2=$(bus_metric emads_bus_events_total)
t2=$(ctl --json submit "$prompt" | json 'd["task"]') || fail "submit"
[ "$(wait_final "$t2" 60)" = done ] || fail "task $t2 did not finish"
sleep 1
e3=$(bus_metric emads_bus_events_total)
with=$((e3 - e2))
kill "$L" 2>/dev/null
got=$(grep -c '"topic"' "$E2E_TMP/all" || true)
spend=$(grep -c '"topic": "spend\.' "$E2E_TMP/all" || true)
steps=$(grep -c '"topic": "\(task\|step\)\.' "$E2E_TMP/all" || true)
echo "events on the bus: $without while only spend. was wanted ($spend1 spend. events), $with while every topic was (the listener got $got: $spend spend., $steps task./step.)"

[ "$steps" -gt 0 ] || fail "the listener got no task. or step. events: $(head -c 2000 "$E2E_TMP/all")"
[ "$with" -eq "$got" ] || fail "the bus fanned out $with events, the listener of every topic got $got"
[ "$spend1" -gt 0 ] || fail "no spend. event for the first task"
[ "$without" -eq "$spend1" ] ||
    fail "with nobody listening to task. or step. the bus still received $without events (only the $spend1 spend. events somebody subscribed should come)"
echo "event_interest: ok"
