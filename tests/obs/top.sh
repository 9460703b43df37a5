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
        break
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
echo "top: ok"
