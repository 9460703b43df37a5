#!/usr/bin/env bash
# `emadsctl top` in a real terminal (tmux): while a task runs with slow LLM
# steps (the test server waits 3 s per call), the screen shows the task and
# its running steps with their agent, path and model, the agents' holds, and
# the bus's workers; `q` ends top, which leaves the alternate screen and
# gives the terminal back in canonical mode with echo on.
. "$(dirname "$0")/../e2e/lib.sh"
: "${EMADS_TEST_LLM:?EMADS_TEST_LLM must name emads-test-llm}"
command -v tmux >/dev/null || { echo "tmux not installed: skipped"; exit 77; }

e2e_llm_server --usage 1000,1000 --scenario slow:3000
ctl up >/dev/null

T="tmux -S $E2E_TMP/tmux.sock"
# a shell that runs top, then records how it ended and the terminal's modes
cat >"$E2E_TMP/run-top.sh" <<SH
"$EMADSCTL" --home "$E2E_RUN" --config "$E2E_CFG/emads.yaml" top --interval 200
echo "top exited \$?" >"$E2E_TMP/top.rc"
stty -a >"$E2E_TMP/stty.after"
echo "back at the shell"
sleep 60
SH
$T new-session -d -s top -x 150 -y 45 "bash $E2E_TMP/run-top.sh"
E2E_EXTRA_PIDS="${E2E_EXTRA_PIDS:-} $($T display -p '#{pid}')"
screen() { $T capture-pane -p -t top; }

for _ in $(seq 1 50); do screen | grep -q "^emads top" && break; sleep 0.1; done
screen | grep -q "^emads top" || { screen; fail "top did not draw"; }
screen | grep -q "TASKS IN FLIGHT: 0" || { screen; fail "tasks in flight before any task"; }

task=$(ctl --json submit "Should we migrate billing to Kubernetes? Assess the risk." | json 'd["task"]')
seen=""
for _ in $(seq 1 100); do
    s=$(screen)
    if echo "$s" | grep -q "^$task *running" &&
       echo "$s" | grep -Eq "^ +cto_analysis +cto_agent +running +llm gpt-4o" &&
       echo "$s" | grep -Eq "^ +coo_analysis +coo_agent +running +llm gpt-4o"; then
        seen=yes
        # one frame samples the orchestrator, the ledger and the bus one
        # after another: wait for a frame in which all three show the step
        echo "$s" | grep -Eq "^cto_agent +0 +0\.000000 +[1-9][0-9]* +0\.[0-9]+ +1$" &&
            echo "$s" | grep -Eq "^cto_agent +1 +1$" && break
    fi
    sleep 0.1
done
[ -n "$seen" ] || { screen; fail "top never showed $task with its two analysis steps running"; }
echo "$s" | grep -Eq "^cto_agent +0 +0\.000000 +[1-9][0-9]* +0\.[0-9]+ +1$" ||
    { echo "$s"; fail "cto_agent's hold not shown while its step runs"; }
echo "$s" | grep -Eq "^cto_agent +1 +1$" || { echo "$s"; fail "cto_agent's worker and request in flight not shown"; }
echo "--- the screen while the task ran:"
echo "$s"

# it refreshes in place: the reconcile step comes to run without a restart
for _ in $(seq 1 150); do
    screen | grep -Eq "^ +reconcile +reconcile_gpt +running" && break
    sleep 0.1
done
screen | grep -Eq "^ +reconcile +reconcile_gpt +running" || { screen; fail "top did not follow the task to reconcile"; }

$T send-keys -t top q
for _ in $(seq 1 50); do [ -s "$E2E_TMP/top.rc" ] && break; sleep 0.1; done
[ "$(cat "$E2E_TMP/top.rc" 2>/dev/null)" = "top exited 0" ] || fail "top did not exit 0 on q: $(cat "$E2E_TMP/top.rc" 2>/dev/null)"
for _ in $(seq 1 20); do screen | grep -q "back at the shell" && break; sleep 0.1; done
screen | grep -q "back at the shell" || { screen; fail "no shell after top"; }
screen | grep -q "^emads top" && { screen; fail "top's screen left behind: the alternate screen was not left"; }
grep -Eq '(^| )icanon( |$)' "$E2E_TMP/stty.after" && grep -Eq '(^| )echo( |$)' "$E2E_TMP/stty.after" ||
    fail "terminal not restored: $(cat "$E2E_TMP/stty.after")"
[ "$(wait_final "$task" 60)" = done ] || fail "the task did not finish"
$T kill-server 2>/dev/null || true

# Ctrl-C ends it the same way: exit 0, terminal restored
rm -f "$E2E_TMP/top.rc" "$E2E_TMP/stty.after"
$T new-session -d -s top -x 150 -y 45 "bash $E2E_TMP/run-top.sh"
E2E_EXTRA_PIDS="${E2E_EXTRA_PIDS:-} $($T display -p '#{pid}')"
for _ in $(seq 1 50); do screen | grep -q "^emads top" && break; sleep 0.1; done
$T send-keys -t top C-c
for _ in $(seq 1 50); do [ -s "$E2E_TMP/stty.after" ] && break; sleep 0.1; done
[ "$(cat "$E2E_TMP/top.rc" 2>/dev/null)" = "top exited 0" ] || fail "top did not exit 0 on Ctrl-C"
grep -Eq '(^| )icanon( |$)' "$E2E_TMP/stty.after" && grep -Eq '(^| )echo( |$)' "$E2E_TMP/stty.after" ||
    fail "terminal not restored after Ctrl-C"
$T kill-server 2>/dev/null || true

# --once: one plain frame (no escape sequences); --json --once: one JSON line
once=$(ctl top --once) || fail "top --once failed"
echo "$once" | grep -q "^emads top" || fail "top --once printed no frame: $once"
echo "$once" | grep -q "$task" && fail "a finished task shown as in flight"
printf '%s' "$once" | grep -q $'\033' && fail "escape sequences in top --once"
j=$(ctl --json top --once) || fail "top --json --once failed"
[ "$(echo "$j" | wc -l)" = 1 ] || fail "top --json --once printed more than one line"
echo "$j" | json '[a["name"] for a in d["agents"]] == ["cto_agent", "coo_agent", "reconcile_gpt"] and d["bus"] and d["tasks"] == []' |
    grep -qx true || fail "top --json frame: $j"
echo "$j" | json 'd["agents"][0]["used"]["cost_uusd"] > 0' | grep -qx true || fail "no spend in the frame: $j"

# usage errors: 2; nothing running: 3
set +e
ctl top --interval 5 >/dev/null 2>&1; [ $? = 2 ] || fail "--interval 5 not refused with 2"
ctl top --bogus >/dev/null 2>&1; [ $? = 2 ] || fail "unknown option not refused with 2"
# the bus goes away under a running top: it says so and keeps going; SIGTERM ends it with 0
"$EMADSCTL" --home "$E2E_RUN" --config "$E2E_CFG/emads.yaml" --json top --interval 200 \
    >"$E2E_TMP/top.jsonl" 2>/dev/null &
top_pid=$!
E2E_EXTRA_PIDS="${E2E_EXTRA_PIDS:-} $top_pid"
for _ in $(seq 1 50); do grep -q '"bus":true' "$E2E_TMP/top.jsonl" && break; sleep 0.1; done
ctl down >/dev/null
for _ in $(seq 1 300); do grep -q '"bus":false' "$E2E_TMP/top.jsonl" && break; sleep 0.1; done
grep -q '"bus":false' "$E2E_TMP/top.jsonl" || fail "top --json did not report the bus gone"
kill -0 "$top_pid" 2>/dev/null || fail "top ended when the bus went away"
kill -TERM "$top_pid"
wait "$top_pid"; [ $? = 0 ] || fail "top did not exit 0 on SIGTERM"
ctl top --once >/dev/null 2>&1; [ $? = 3 ] || fail "top with nothing running did not exit 3"
set -e
echo "top: ok"
