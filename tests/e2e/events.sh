#!/usr/bin/env bash
# events: the event bodies of docs/PROTOCOL.md §14 as a subscriber sees them
# (`emadsctl --json watch`) while a task runs with the default configuration:
# task.* carry task, state and data {class, workflow}; step.* carry task,
# step, agent, path and data {state, attempt}, with no top-level state, and
# step.done the step's actual as amounts; spend.commit names the hold, the
# agent and the actual; every event has at_ms and the publisher's name.
. "$(dirname "$0")/lib.sh"

ctl up >/dev/null
ctl --json watch >"$E2E_TMP/ev.out" 2>"$E2E_TMP/ev.err" &
E2E_EXTRA_PIDS="${E2E_EXTRA_PIDS:-} $!"
# the watcher is subscribed once it sees a task's events: submit until one
# of its own task.submitted events arrives
for _ in $(seq 1 50); do
    t=$(ctl --json submit "search the latest news on current GPU prices" | json 'd["task"]')
    [ "$(wait_final "$t" 60)" = done ] || fail "task $t did not end done"
    grep -q "\"topic\":\"task.submitted\".*\"task\":\"$t\"\|\"task\":\"$t\".*\"topic\":\"task.submitted\"" \
        "$E2E_TMP/ev.out" && break
done
# the last events of the task may still be on their way
for _ in $(seq 1 50); do
    grep -q "\"task\":\"$t\".*\"topic\":\"task.done\"\|\"topic\":\"task.done\".*\"task\":\"$t\"" \
        "$E2E_TMP/ev.out" && break
    sleep 0.1
done

python3 - "$E2E_TMP/ev.out" "$t" <<'PY' || fail "event bodies differ from PROTOCOL.md §14 (above)"
import json, sys
path, task = sys.argv[1], sys.argv[2]
evs = [json.loads(l) for l in open(path) if l.strip()]
mine = [e for e in evs if e.get("task") == task]
bad = []
def want(cond, what, e):
    if not cond:
        bad.append(what + ": " + json.dumps(e))
topics = {e["topic"] for e in mine}
for t in ("task.submitted", "task.started", "task.done", "step.started", "step.done", "spend.commit"):
    want(t in topics, "no " + t + " event of the task", sorted(topics))
for e in mine:
    want(isinstance(e.get("at_ms"), int), "at_ms", e)
    want(e.get("sender"), "the publisher's name", e)
    tp = e["topic"]
    if tp.startswith("task."):
        want(e.get("sender") == "orchestrator", "task.* from the orchestrator", e)
        want(isinstance(e.get("state"), str), "task.* state", e)
        want(isinstance(e.get("data", {}).get("class"), str) and
             isinstance(e.get("data", {}).get("workflow"), str), "task.* data {class, workflow}", e)
        if tp == "task.done":
            want(e["state"] == "done", "task.done state done", e)
    if tp.startswith("step."):
        want(e.get("sender") == "orchestrator", "step.* from the orchestrator", e)
        want("state" not in e, "step.* has no top-level state", e)
        d = e.get("data", {})
        want(isinstance(d.get("state"), str) and isinstance(d.get("attempt"), int),
             "step.* data {state, attempt}", e)
        want(all(isinstance(e.get(k), str) for k in ("step", "agent")), "step.* step, agent", e)
        if tp == "step.started":
            want(d.get("state") == "running", "step.started data.state running", e)
        if tp == "step.done" and d.get("state") == "done":
            a = e.get("amounts", {})
            want(set(a) == {"tokens", "latency_ms", "tool_calls", "cost_uusd"} and
                 a["latency_ms"] > 0, "step.done amounts: the step's actual", e)
    if tp == "spend.commit":
        want(e.get("sender") == "ledger", "spend.commit from the ledger", e)
        want(isinstance(e.get("hold_id"), str) and isinstance(e.get("agent"), str) and
             isinstance(e.get("step"), str) and "amounts" in e, "spend.commit fields", e)
for b in bad:
    print(b)
sys.exit(1 if bad else 0)
PY
echo "ok: the task, step and spend events of $t have the documented shape"
