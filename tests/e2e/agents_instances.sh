#!/usr/bin/env bash
# agents_instances.sh - `instances: 2` for coo_agent: `up` starts two
# processes of it (pid files coo_agent.pid and coo_agent.<pid>.pid), both
# register with the bus and both serve: the coo steps of several tasks are
# shared between them. `status` lists both; a killed instance is started
# again by the next `up` (the other one kept); `down` stops both. The run
# is not supervised (`up --no-supervise`): a supervisor would restart the
# killed instance itself, racing the `up` under test (supervision has its
# own test, hosts_three).
. "$(dirname "$0")/lib.sh"

python3 - "$E2E_CFG/emads.yaml" <<'PY' || fail "the coo_agent instances edit did not match (above)"
import re, sys
p = sys.argv[1]
s = open(p).read()
s2 = re.sub(r"(  coo_agent:\n    role: coo\n    instances:) 1", r"\1 2", s)
assert s2 != s, "no coo_agent instances line"
# one step at a time per process, so that concurrent steps need both
s3 = s2.replace("  coo_agent:\n    role: coo\n    instances: 2\n    concurrency: 4",
                "  coo_agent:\n    role: coo\n    instances: 2\n    concurrency: 1")
assert s3 != s2, "no coo_agent concurrency line"
s2 = s3
open(p, "w").write(s2)
PY

up=$(ctl --json up --no-supervise) || fail "up failed: $up"
n=$(echo "$up" | json 'len([p for p in d["processes"] if p["name"] == "coo_agent" and p["healthy"]])')
[ "$n" -eq 2 ] || fail "up started $n healthy coo_agent instances: $up"
st=$(ctl --json status) || fail "status: $st"
coo=$(echo "$st" | json '[p for p in d["processes"] if p["name"] == "coo_agent"][0]')
[ "$(echo "$coo" | json 'd["instances"]')" -eq 2 ] || fail "status instances: $coo"
[ "$(echo "$coo" | json 'd["workers"]')" -eq 2 ] || fail "bus workers of coo_agent: $coo"
[ "$(echo "$coo" | json 'd["state"]')" = running ] || fail "state: $coo"
first=$(cat "$E2E_RUN/pids/coo_agent.pid")
pids=$(echo "$coo" | json '" ".join(str(p) for p in d["pids"])')
second=${pids#"$first "}
[ "$second" != "$pids" ] && [ -f "$E2E_RUN/pids/coo_agent.$second.pid" ] ||
    fail "pid files: $(ls "$E2E_RUN/pids"), status pids $pids"
ctl status | grep -q "^coo_agent (2) *$first,$second " || fail "status table: $(ctl status)"

# several tasks at once: both instances take coo steps
tasks=""
for k in 1 2 3 4 5 6; do
    t=$(ctl --json submit "Plan the rollout $k of the warehouse scanner app to 12 sites within 8 weeks" |
        json 'd["task"]') || fail "submit $k"
    tasks="$tasks $t"
done
for t in $tasks; do
    [ "$(wait_final "$t" 90)" = done ] || fail "task $t did not finish: $(ctl --json result "$t")"
done
n1=$(grep -c "coo_agent\[$first\].*step .*/coo_analysis ok" "$E2E_RUN/logs/coo_agent.log" || true)
n2=$(grep -c "coo_agent\[$second\].*step .*/coo_analysis ok" "$E2E_RUN/logs/coo_agent.log" || true)
[ "$n1" -ge 1 ] && [ "$n2" -ge 1 ] || fail "steps not shared: instance $first ran $n1, $second ran $n2"
[ $((n1 + n2)) -eq 6 ] || fail "want 6 coo steps in all, got $((n1 + n2))"

# an instance that died is started again by the next `up`, the other kept
kill -KILL "$first"
for _ in $(seq 1 100); do [ -e "/proc/$first/stat" ] && [ "$(cut -d' ' -f3 "/proc/$first/stat" 2>/dev/null)" != Z ] || break; sleep 0.05; done
up=$(ctl --json up --no-supervise) || fail "up after a lost instance: $up"
[ "$(echo "$up" | json '[p["started"] for p in d["processes"] if p["name"] == "coo_agent"]')" = '[false, true]' ] ||
    fail "up did not restart exactly the lost instance: $up"
third=$(echo "$up" | json '[p["pid"] for p in d["processes"] if p["name"] == "coo_agent"][1]')
st=$(ctl --json status)
[ "$(echo "$st" | json '[p["pids"] for p in d["processes"] if p["name"] == "coo_agent"][0]')" = "[$third, $second]" ] ||
    fail "status after the restart (the pid file coo_agent.pid first): $st"
[ -f "$E2E_RUN/pids/coo_agent.pid" ] && [ "$(cat "$E2E_RUN/pids/coo_agent.pid")" = "$third" ] ||
    fail "the restarted instance did not take over coo_agent.pid: $(ls "$E2E_RUN/pids")"
first=$third

out=$(ctl --json down)
stopped=$(echo "$out" | json 'len([p for p in d["processes"] if p["name"] == "coo_agent"])')
[ "$stopped" -eq 2 ] || fail "down stopped $stopped coo_agent instances: $out"
for p in $first $second; do # gone, or a zombie not yet reaped by init
    [ ! -e "/proc/$p/stat" ] || [ "$(cut -d' ' -f3 "/proc/$p/stat" 2>/dev/null)" = Z ] ||
        [ "$(cat /proc/$p/comm 2>/dev/null)" != coo_agent ] || fail "coo_agent $p still runs after down"
done
echo "agents_instances: ok - coo steps $n1 + $n2 on two instances"
