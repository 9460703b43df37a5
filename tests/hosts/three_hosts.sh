#!/usr/bin/env bash
# three_hosts.sh - a constellation over three "hosts" (issue 18): three
# network namespaces joined by veth links, with addresses that exist only
# inside them, tcp:// and CURVE.
#
#   core  (namespace A, bus on 10.77.0.1 on A's loopback): `up --only
#         core,coo_agent,reconcile_gpt --bus tcp://10.77.0.1:PORT`
#   agent (namespaces B and C): `up --only cto_agent --identity DIR`, DIR
#         made on A by `certs export cto_agent.b|c` and `certs export
#         emadsctl` (the client identity of `status`)
#
# Checks, in order:
#   1. `status` on an agent host exits 0 and lists every process of every
#      host (from the bus: instance, host, pid);
#   2. 20 tasks submitted at once, every LLM step taking 1 s, agents at
#      concurrency 4 (more steps than free workers: the bus's queue timeout
#      passes and the orchestrator queues the step): all end done, and
#      `result` shows steps served by both cto_agent instances;
#   3. kill -9 of the cto_agent on B: the supervisor `up` left there
#      restarts it (`status` shows the restart) and tasks still end done;
#   4. the link to B down for 10 s while tasks run: every task ends in a
#      final state, B's agent rejoins, and every task's `result` adds up to
#      the ledger's `spend --task`;
#   5. an agent on C whose config has another price table is refused by the
#      bus, both sides saying "config fingerprint mismatch".
# Needs root (ip netns); skipped (exit 77) without it.
set -eu
E2E_HELPERS_ONLY=1 . "$(dirname "$0")/../e2e/lib.sh"
: "${EMADSCTL:?EMADSCTL must name the emadsctl binary}"
: "${EMADS_SRC_CONFIG:?EMADS_SRC_CONFIG must name the config folder}"
: "${EMADS_TEST_LLM:?EMADS_TEST_LLM must name the test LLM server}"

if [ "$(id -u)" -ne 0 ] || ! ip netns list >/dev/null 2>&1; then
    echo "SKIP: needs root and ip netns" >&2
    exit 77
fi

fail() {
    echo "FAIL: $*" >&2
    exit 1
}
json() {
    python3 -c 'import json,sys; d=json.load(sys.stdin); v=eval(sys.argv[1]); print(v if not isinstance(v,(dict,list,bool)) else json.dumps(v))' "$1"
}

ID=$(($$ % 100000))
NS_A=emh${ID}a NS_B=emh${ID}b NS_C=emh${ID}c
T=$(mktemp -d /tmp/emads-hosts.XXXXXX)
PORT=5555
BUS=tcp://10.77.0.1:$PORT
BG_PIDS=""

cleanup() {
    rc=$?
    for h in B C A; do
        "$EMADSCTL" --home "$T/$h/run" --config "$T/$h/config/emads.yaml" down >/dev/null 2>&1 || true
    done
    if [ $rc -ne 0 ]; then
        for f in "$T"/*/run/logs/*.log; do
            [ -f "$f" ] || continue
            echo "---- $f (last lines)" >&2
            tail -n 12 "$f" >&2 || true
        done
    fi
    for pid in $BG_PIDS; do kill "$pid" 2>/dev/null || true; done
    for ns in "$NS_A" "$NS_B" "$NS_C"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "$T"
    exit $rc
}
trap cleanup EXIT INT TERM

# ---- the network: A is the hub; B and C reach the bus address through it
for ns in "$NS_A" "$NS_B" "$NS_C"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
done
ip -n "$NS_A" addr add 10.77.0.1/32 dev lo
ip link add "e${ID}ab" netns "$NS_A" type veth peer name "e${ID}ba" netns "$NS_B"
ip link add "e${ID}ac" netns "$NS_A" type veth peer name "e${ID}ca" netns "$NS_C"
ip -n "$NS_A" addr add 10.77.1.1/24 dev "e${ID}ab"
ip -n "$NS_B" addr add 10.77.1.2/24 dev "e${ID}ba"
ip -n "$NS_A" addr add 10.77.2.1/24 dev "e${ID}ac"
ip -n "$NS_C" addr add 10.77.2.2/24 dev "e${ID}ca"
for l in "$NS_A e${ID}ab" "$NS_A e${ID}ac" "$NS_B e${ID}ba" "$NS_C e${ID}ca"; do
    # shellcheck disable=SC2086 # namespace and link name
    set -- $l
    ip -n "$1" link set "$2" up
done
ip -n "$NS_B" route add default via 10.77.1.1
ip -n "$NS_C" route add default via 10.77.2.1
# reachable: a connection to a closed port of 10.77.0.1 is refused (not lost)
reach() {
    python3 -c 'import socket,sys
s = socket.socket(); s.settimeout(1)
try: s.connect(("10.77.0.1", 9)); sys.exit(0)
except ConnectionRefusedError: sys.exit(0)
except OSError: sys.exit(1)'
}
ip netns exec "$NS_B" bash -c "$(declare -f reach); reach" || fail "B cannot reach the bus address"
ip netns exec "$NS_C" bash -c "$(declare -f reach); reach" || fail "C cannot reach the bus address"
ip -4 addr show | grep -q "10\.77\." && fail "the test addresses exist outside the namespaces"

# ---- per host: a config copy and an LLM server answering after 1 s
export OPENAI_API_KEY=test-key
unset EMADS_HOME EMADS_CONFIG EMADS_INSTANCE
for h in A B C; do
    mkdir -p "$T/$h"
    cp -r "$EMADS_SRC_CONFIG" "$T/$h/config"
    edit_cfg "$T/$h/config/emads.yaml" 's/^\(  [a-z_]*: "127\.0\.0\.1:\)[0-9]*"/\10"/'
    ns_var=NS_$h
    ip netns exec "${!ns_var}" "$EMADS_TEST_LLM" --port-file "$T/$h/llm.port" --scenario slow:1000 \
        >/dev/null 2>&1 &
    BG_PIDS="$BG_PIDS $!"
done
for h in A B C; do
    for _ in $(seq 1 100); do [ -s "$T/$h/llm.port" ] && break; sleep 0.05; done
    edit_cfg "$T/$h/config/emads.yaml" \
        "s|base_url: \"http://127.0.0.1:8080/v1\"|base_url: \"http://127.0.0.1:$(cat "$T/$h/llm.port")/v1\"|"
done
# The whole batch queues for the agents: give the tasks the time (the same
# edit on every host, so the fingerprints agree)
for h in A B C; do
    edit_cfg "$T/$h/config/agents_budget.yaml" 's/^\(  total_task_budget: {\)/\1max_latency_ms: 120000, /'
    # a step cut off with the link is reconciled when its hold expires: soon
    edit_cfg "$T/$h/config/emads.yaml" 's/^  hold_ttl_ms: 60000 /  hold_ttl_ms: 8000 /'
done

# on host H: emadsctl with that host's run directory and config
on() {
    local host=$1 ns_var=NS_$1
    shift
    ip netns exec "${!ns_var}" "$EMADSCTL" --home "$T/$host/run" --config "$T/$host/config/emads.yaml" "$@"
}

# ---- core on A
on A up --only core,coo_agent,reconcile_gpt --bus "$BUS" >"$T/upA.out" 2>&1 ||
    fail "up on A: $(cat "$T/upA.out")"
grep -q "starting emads-bus .*ok" "$T/upA.out" || fail "A did not start its bus: $(cat "$T/upA.out")"
grep -q "starting cto_agent" "$T/upA.out" && fail "A started cto_agent although --only does not name it"
for h in b c; do
    on A certs issue "cto_agent.$h" --for cto_agent >/dev/null || fail "certs issue cto_agent.$h"
    on A certs export "cto_agent.$h" "$T/id_$h" >/dev/null || fail "certs export cto_agent.$h"
    on A certs export emadsctl "$T/id_$h" >/dev/null || fail "certs export emadsctl for $h"
done
[ "$(cat "$T/id_b/bus.endpoint")" = "$BUS" ] || fail "the bundle names $(cat "$T/id_b/bus.endpoint"), not $BUS"

# ---- an agent host: never its own bus, never new certificates
ncerts_b0=$(find "$T/id_b/certs" -name '*.cert*' | wc -l)
for h in B C; do
    lh=$(echo "$h" | tr BC bc)
    on "$h" up --only cto_agent --identity "$T/id_$lh" >"$T/up$h.out" 2>&1 ||
        fail "up on $h: $(cat "$T/up$h.out")"
    grep -q "starting cto_agent .*ok" "$T/up$h.out" || fail "$h: cto_agent not started: $(cat "$T/up$h.out")"
    grep -q "emads-bus" "$T/up$h.out" && fail "$h tried to start a bus: $(cat "$T/up$h.out")"
    grep -q "created .* certificate" "$T/up$h.out" && fail "$h created certificates: $(cat "$T/up$h.out")"
    [ ! -e "$T/$h/run/pids/emads-bus.pid" ] || fail "$h has a bus pid file"
done
ncerts_b=$(find "$T/B/run/certs" -name '*.cert*' | wc -l)
[ "$ncerts_b" -eq "$ncerts_b0" ] || fail "B holds $ncerts_b certificates, the bundle $ncerts_b0"
# the core (everything but cto_agent) on an agent host is asked for by name: refused, nothing left behind
rc=0
on B up --only emads-bus >"$T/upBbus.out" 2>&1 || rc=$?
[ $rc -eq 1 ] || fail "up --only emads-bus on B: exit $rc (want 1): $(cat "$T/upBbus.out")"
grep -q "cannot start emads-bus here" "$T/upBbus.out" || fail "no clear reason: $(cat "$T/upBbus.out")"
[ ! -e "$T/B/run/pids/emads-bus.pid" ] || fail "a refused up left a pid file"
echo "ok ($SECONDS s): core on A, one cto_agent on each of B and C"

# ---- 1. status from an agent host sees every host
rc=0
on B --json status >"$T/status.json" 2>"$T/status.err" || rc=$?
[ $rc -eq 0 ] || fail "status on B: exit $rc: $(cat "$T/status.err") $(cat "$T/status.json")"
json 'd["running"]' <"$T/status.json" | grep -q true || fail "status on B: not running: $(cat "$T/status.json")"
json 'sorted(w["instance"] for w in d["workers"] if w["service"] == "cto_agent")' <"$T/status.json" |
    grep -q '"cto_agent.b", "cto_agent.c"' || fail "status on B does not list both cto_agent instances: $(cat "$T/status.json")"
for svc in ledger orchestrator coo_agent reconcile_gpt; do
    json "[w['pid'] for w in d['workers'] if w['service'] == '$svc']" <"$T/status.json" | grep -q '[0-9]' ||
        fail "status on B does not list $svc with its pid: $(cat "$T/status.json")"
done
on C status >"$T/statusC.txt" || fail "status on C: exit $?: $(cat "$T/statusC.txt")"
grep -q "cto_agent.b" "$T/statusC.txt" || fail "status on C has no worker table: $(cat "$T/statusC.txt")"
echo "ok ($SECONDS s): status on B and C: every process of every host"

# until_ge HOST EXPR N TRIES: poll `status --json` on HOST every 0.1 s until
# the python expression EXPR (of the document d) is at least N; prints it
until_ge() {
    local v=0
    for _ in $(seq 1 "$4"); do
        v=$(on "$1" --json status 2>/dev/null | json "$2" 2>/dev/null) || v=0
        [ "$v" -ge "$3" ] && break
        sleep 0.1
    done
    echo "$v"
}

# submit N tasks on A; their ids in file $2
submit_batch() {
    : >"$2"
    local pids=""
    for i in $(seq 1 "$1"); do
        on A submit "Should we migrate billing to Kubernetes? (#$3-$i)" >>"$2" &
        pids="$pids $!"
    done
    # shellcheck disable=SC2086 # the submitters' pids
    wait $pids
    [ "$(wc -l <"$2")" -eq "$1" ] || fail "submitted $(wc -l <"$2") of $1 tasks"
}
# wait until every task of file $1 is final; prints "id state" lines
wait_batch() {
    for t in $(cat "$1"); do
        st=timeout
        for _ in $(seq 1 1200); do
            st=$(on A --json result "$t" 2>/dev/null | json 'd["state"]' 2>/dev/null) || st=unknown
            case $st in done | failed | budget_exhausted | cancelled) break ;; esac
            sleep 0.1
        done
        echo "$t $st"
    done
}

# ---- 2. 20 tasks at once, 1 s LLM steps, concurrency 4
submit_batch 20 "$T/batch1" one
wait_batch "$T/batch1" >"$T/batch1.st"
notdone=$(grep -vc ' done$' "$T/batch1.st" || true)
[ "$notdone" -eq 0 ] || fail "$notdone of 20 tasks did not end done: $(grep -v ' done$' "$T/batch1.st")
$(on A --json result "$(grep -v ' done$' "$T/batch1.st" | head -1 | cut -d' ' -f1)")"
: >"$T/served"
for t in $(cat "$T/batch1"); do
    on A --json result "$t" |
        json '"\n".join(a.get("served_by", "?") for s in d["steps"] for a in s.get("attempts", []) if s["agent"] == "cto_agent" and a.get("status") == "ok")' >>"$T/served"
done
grep -qx "cto_agent.b" "$T/served" || fail "no step was served by cto_agent.b: $(sort "$T/served" | uniq -c)"
grep -qx "cto_agent.c" "$T/served" || fail "no step was served by cto_agent.c: $(sort "$T/served" | uniq -c)"
on A result "$(head -1 "$T/batch1")" | grep -q "cto_agent\.[bc]" || fail "result does not show the serving instance"
echo "ok ($SECONDS s): 20 tasks done; cto_agent steps served by: $(sort "$T/served" | uniq -c | tr -s ' \n' ' ');" \
    "steps queued for a free worker: $(grep -c "found no free worker" "$T/A/run/logs/emads-orchestrator.log" || true)"

# ---- 3. kill -9 of the agent on B: the supervisor restarts it
pid_b=$(cat "$T/B/run/pids/cto_agent.pid")
kill -9 "$pid_b"
submit_batch 4 "$T/batch2" two
r=$(until_ge B '[p["restarts"] for p in d["processes"] if p["name"] == "cto_agent"][0]' 1 200)
[ "$r" -ge 1 ] || fail "cto_agent on B was not restarted: $(cat "$T/B/run/logs/emads-supervisor.log")"
# the restart is counted when the supervisor starts it; its pid file is
# written once it is healthy
new_b=""
for _ in $(seq 1 200); do
    new_b=$(cat "$T/B/run/pids/cto_agent.pid" 2>/dev/null || true)
    [ -n "$new_b" ] && [ "$new_b" != "$pid_b" ] && kill -0 "$new_b" 2>/dev/null && break
    sleep 0.05
done
[ -n "$new_b" ] && [ "$new_b" != "$pid_b" ] ||
    fail "no pid file names a new cto_agent on B after the restart (${new_b:-none})"
wait_batch "$T/batch2" >"$T/batch2.st"
grep -v ' done$' "$T/batch2.st" && fail "tasks did not end done after the restart"
on B status | grep -q "^cto_agent .* 1 " || fail "status does not show the restart: $(on B status)"
echo "ok ($SECONDS s): the killed agent on B was restarted (pid $pid_b -> $new_b); 4 tasks done"

# ---- 4. the link to B down for 10 s while tasks run
submit_batch 6 "$T/batch3" three
ip -n "$NS_A" link set "e${ID}ab" down
sleep 10
ip -n "$NS_A" link set "e${ID}ab" up
wait_batch "$T/batch3" >"$T/batch3.st"
grep -E ' (timeout|unknown)$' "$T/batch3.st" && fail "tasks did not reach a final state after the link cut"
n=$(until_ge B 'len([w for w in d["workers"] if w["instance"] == "cto_agent.b"])' 1 400)
[ "$n" -ge 1 ] || fail "cto_agent.b did not rejoin after the link came back"
# Every task's result adds up to the ledger's spend. A step whose worker
# was cut off mid-step (worker_lost) is charged its whole hold when its
# task closes; its agent's commit arrives once the link is back, and the
# orchestrator then re-settles the result from the ledger: wait for that
# (up to 30 s for all tasks), then require equality everywhere.
resettled=0
deadline=$((SECONDS + 30))
for t in $(cat "$T/batch1" "$T/batch2" "$T/batch3"); do
    while :; do
        res=$(on A --json result "$t")
        sp=$(on A --json spend --task "$t")
        verdict=$(RES=$res SP=$sp python3 -c '
import json, os
r = json.loads(os.environ["RES"]); sp = json.loads(os.environ["SP"])
bad = []
for dim in ("tokens", "cost_uusd", "tool_calls"):
    steps = sum(s.get("actual", {}).get(dim, 0) for s in r["steps"])
    ledger = sp["total"]["used"][dim]
    if steps != ledger:
        bad.append("%s: result %d, ledger %d" % (dim, steps, ledger))
print("; ".join(bad) if bad else "same")')
        [ "$verdict" = same ] && break
        [ "$SECONDS" -lt "$deadline" ] || fail "task $t: $verdict"
        sleep 0.5
    done
    if RES=$res python3 -c 'import json, os, sys; sys.exit(0 if any(s.get("resettled") for s in json.loads(os.environ["RES"])["steps"]) else 1)'; then
        resettled=$((resettled + 1))
    fi
done
echo "ok ($SECONDS s): link cut: $(cut -d' ' -f2 "$T/batch3.st" | sort | uniq -c | tr -s ' \n' ' '); B rejoined; 30 results = spend ($resettled re-settled after a late commit)"

# ---- 5. a host whose price table differs is refused
cp -r "$T/C/config" "$T/C/config100"
python3 - "$T/C/config100/emads.yaml" <<'PY' || fail "price edit did not match"
import re, sys
p = sys.argv[1]; s = open(p).read()
n = 0
def up(m):
    global n; n += 1
    return "%s%s" % (m.group(1), float(m.group(2)) * 100)
s2 = re.sub(r"(input_usd_per_mtok:\s*)([0-9.]+)", up, s, count=1)
assert n == 1, "no input_usd_per_mtok in %s" % p
open(p, "w").write(s2)
PY
agent=$(dirname "$(readlink -f "$EMADSCTL")")/../agents/emads-agent
ip netns exec "$NS_C" env EMADS_INSTANCE=cto_agent.c "$agent" --name cto_agent \
    --config "$T/C/config100/emads.yaml" --home "$T/C/run" >"$T/drift.log" 2>&1 &
BG_PIDS="$BG_PIDS $!"
for _ in $(seq 1 100); do
    grep -q "config fingerprint mismatch" "$T/drift.log" && break
    sleep 0.1
done
grep -q "config fingerprint mismatch" "$T/drift.log" || fail "the drifting agent was not told: $(cat "$T/drift.log")"
grep -q "READY refused .*config fingerprint mismatch" "$T/A/run/logs/emads-bus.log" ||
    fail "the bus log does not name the fingerprint mismatch"
n=$(on A --json status | json 'len([w for w in d["workers"] if w["service"] == "cto_agent"])')
[ "$n" -eq 2 ] || fail "the bus lists $n cto_agent workers, want the 2 agreeing ones"
echo "ok ($SECONDS s): the host with another price table was refused: $(grep -o 'config fingerprint mismatch[^(]*' "$T/drift.log" | head -1)"

# ---- down --only on B stops supervision of it and the agent
on B down --only cto_agent >/dev/null || fail "down --only cto_agent on B"
sleep 1
[ -z "$(cat "$T/B/run/pids/cto_agent.pid" 2>/dev/null)" ] || ! kill -0 "$(cat "$T/B/run/pids/cto_agent.pid")" 2>/dev/null ||
    fail "cto_agent on B still runs after down --only"
echo "three_hosts: ok"
