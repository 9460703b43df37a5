#!/bin/bash
# instances.sh - two cto_agent processes in one run directory (a second
# worker started by hand on the same host): the second writes its own pid
# file instead of overwriting the first's, `emadsctl status` counts both,
# and `emadsctl down` stops both, leaving no process of the run directory.
. "$(dirname "$0")/../e2e/lib.sh"

Y="$E2E_CFG/emads.yaml"
ctl up >/dev/null
first=$(cat "$E2E_RUN/pids/cto_agent.pid")
agent_bin=$(dirname "$(readlink -f "$EMADSCTL")")/../agents/emads-agent
[ -x "$agent_bin" ] || fail "no emads-agent binary at $agent_bin"
# setsid: the agent must not depend on this shell; down has to stop it
setsid "$agent_bin" --name cto_agent --config "$Y" --home "$E2E_RUN" >>"$E2E_RUN/logs/cto_agent-2.log" 2>&1 &
second=$!
E2E_EXTRA_PIDS="$second"

# the second instance has registered and written <name>.<pid>.pid
n=0
for i in $(seq 1 200); do
    st=$(ctl --json status || true)
    n=$(echo "$st" | json '[p["instances"] for p in d["processes"] if p["name"] == "cto_agent"][0]')
    w=$(echo "$st" | json '[p["workers"] for p in d["processes"] if p["name"] == "cto_agent"][0]')
    [ "$n" -ge 2 ] && [ "$w" -ge 2 ] && break
    sleep 0.05
done
[ "$n" -eq 2 ] || fail "status lists $n cto_agent instances, expected 2: $st"
[ "$(cat "$E2E_RUN/pids/cto_agent.pid")" = "$first" ] || fail "the first instance's pid file was overwritten"
[ -f "$E2E_RUN/pids/cto_agent.$second.pid" ] || fail "no pid file cto_agent.$second.pid: $(ls "$E2E_RUN/pids")"
pids=$(echo "$st" | json '" ".join(str(x) for x in [p["pids"] for p in d["processes"] if p["name"] == "cto_agent"][0])')
[ "$pids" = "$first $second" ] || fail "status pids '$pids', expected '$first $second'"
ctl status | grep -q "^cto_agent (2) *$first,$second " ||
    fail "status does not show 'cto_agent (2)' with both pids $first,$second: $(ctl status)"

# the other agents run once
n1=$(echo "$st" | json '[p["instances"] for p in d["processes"] if p["name"] == "coo_agent"][0]')
[ "$n1" -eq 1 ] || fail "coo_agent instances $n1, expected 1"

out=$(ctl --json down)
stopped=$(echo "$out" | json '" ".join(sorted(str(p["pid"]) for p in d["processes"] if p["name"] == "cto_agent"))')
want=$(printf '%s\n' "$first" "$second" | LC_ALL=C sort | tr '\n' ' ' | sed 's/ $//')
[ "$stopped" = "$want" ] || fail "down stopped cto_agent pids '$stopped', expected '$want'"
if pgrep -f "$E2E_RUN" >/dev/null; then
    fail "processes of $E2E_RUN left after down: $(pgrep -af "$E2E_RUN")"
fi
left=$(ls "$E2E_RUN/pids")
[ -z "$left" ] || fail "pid files left after down: $left"
echo "ok: 2 cto_agent instances listed and both stopped"
