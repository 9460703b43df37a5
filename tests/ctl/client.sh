#!/usr/bin/env bash
# client.sh - emadsctl as a client that may go away or lose its bus:
# (1) `train --tasks` refuses what is not a small text file (/dev/zero, a
# FIFO, a binary database, Latin-1, too many texts) with exit 2 and the
# line, at once; (2) every --json output is one line; (3) `watch` says on
# stderr when the bus stops answering and when it is back (stdout keeps
# only events), and --exit-on-disconnect exits 3; (4) a training run stops
# when its client does: output closed (`train | head -1`) or SIGTERM.
. "$(dirname "$0")/../e2e/lib.sh"

# expect RC PATTERN CMD... : run ctl CMD, want exit RC and PATTERN on stderr
expect() {
    local want=$1 pat=$2 rc=0
    shift 2
    timeout 20 "$EMADSCTL" --home "$E2E_RUN" --config "$E2E_CFG/emads.yaml" "$@" \
        >"$E2E_TMP/out" 2>"$E2E_TMP/err" || rc=$?
    [ "$rc" -eq "$want" ] || fail "ctl $*: exit $rc, want $want; stderr: $(cat "$E2E_TMP/err")"
    grep -q -- "$pat" "$E2E_TMP/err" || fail "ctl $*: stderr lacks '$pat': $(cat "$E2E_TMP/err")"
}
# one_line FILE WHAT : FILE holds exactly one line of JSON
one_line() {
    [ "$(wc -l <"$1")" -eq 1 ] || fail "$2: --json output is not one line: $(head -c 300 "$1")"
    python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$1" || fail "$2: not JSON"
}

# ---- (1) task files, refused before the constellation is contacted --------
expect 2 "/dev/zero is not a regular file" train --tasks /dev/zero
mkfifo "$E2E_TMP/fifo"
expect 2 "fifo is not a regular file" train --tasks "$E2E_TMP/fifo"
printf 'SQLite format 3\0\0\1\2binary' >"$E2E_TMP/ledger.db"
expect 2 "ledger.db: line 1: binary content (byte 0x00)" train --tasks "$E2E_TMP/ledger.db"
printf '# ok\nfirst task\n\ncaf\xe9 au lait\n' >"$E2E_TMP/latin1.txt"
expect 2 "latin1.txt: line 4: not UTF-8 text" train --tasks "$E2E_TMP/latin1.txt"
seq -f 'task %g' 1 1001 >"$E2E_TMP/many.txt"
expect 2 "line 1001: more than 1000 task texts" train --tasks "$E2E_TMP/many.txt"
head -c 1100000 /dev/zero | tr '\0' 'a' >"$E2E_TMP/big.txt"
expect 2 "is larger than 1024 KiB" train --tasks "$E2E_TMP/big.txt"
printf '\n\n# nothing\n' >"$E2E_TMP/empty.txt"
expect 2 "holds no task text" train --tasks "$E2E_TMP/empty.txt"

# ---- (2) one line of JSON per command ------------------------------------
ctl --json config check "$E2E_CFG/emads.yaml" >"$E2E_TMP/j" || fail "config check failed"
one_line "$E2E_TMP/j" "config check"

llm=false
if [ -x "${EMADS_TEST_LLM:-}" ]; then
    e2e_llm_server --usage 1000,1000
    llm=true
fi
ctl up >/dev/null
for c in status "spend" "tasks --all" "policy show"; do
    # shellcheck disable=SC2086
    ctl --json $c >"$E2E_TMP/j" || fail "$c failed"
    one_line "$E2E_TMP/j" "$c"
done
ctl --json plan "Should we migrate billing to Kubernetes? Assess the risk." >"$E2E_TMP/j" || true
one_line "$E2E_TMP/j" "plan"

# ---- (2b) spend: the current period's accounts, in one ledger query ------
if $llm; then
    for c in 0.02 0.02 -; do
        if [ "$c" = - ]; then set -- ; else set -- --max-cost "$c"; fi
        ctl --json submit --wait "$@" "Should we adopt a service mesh? Assess the risk." >/dev/null ||
            true # the state does not matter: the ledger has the task's accounts
    done
    spend_requests() { # the spend requests the ledger has answered
        local addr
        addr=$(ctl --json status | json '[p["metrics"][0] for p in d["processes"] if p["name"] == "emads-ledger"][0]')
        curl -sf "http://$addr/metrics" |
            awk '/^emads_ledger_request_duration_seconds_count\{.*type="spend"/ {s += $2} END {print s + 0}'
    }
    n0=$(spend_requests)
    sp=$(ctl --json spend)
    n1=$(spend_requests)
    [ $((n1 - n0)) -eq 1 ] || fail "spend asked the ledger $((n1 - n0)) times, want once: $sp"
    # no period budget in this config: every agent shows its spend of the
    # day, without a limit, and nothing is summed over tasks
    [ "$(echo "$sp" | json '"total" not in d and all(not a["budget"] and a["limit"]["cost_uusd"] == -1 and a["pct_used"] is None for a in d["agents"])')" = true ] ||
        fail "spend shows a limit no budget sets: $sp"
    since=$(echo "$sp" | json 'd["since_ms"] // 1000')
    [ "$(echo "$sp" | json 'd["period"]')" = "$(date -u -d "@$since" +%Y-%m-%d)" ] ||
        fail "the default period is not the day that starts at since_ms: $sp"
    since=$(date -u -d "@$since" +%Y-%m-%dT%H:%M:%SZ)
    rep=$(ctl --json spend --by agent --since "$since")
    for a in $(echo "$sp" | json '" ".join(a["name"] for a in d["agents"])'); do
        want=$(echo "$rep" | json "sum(r['spent']['cost_uusd'] for r in d['rows'] if r['group'] == '$a')")
        got=$(echo "$sp" | json "[a['used']['cost_uusd'] for a in d['agents'] if a['name'] == '$a'][0]")
        [ "$got" -eq "$want" ] || fail "spend: $a used $got uUSD this period, spend --by agent says $want"
    done
    [ "$(echo "$sp" | json 'sum(a["used"]["cost_uusd"] for a in d["agents"])')" -gt 0 ] ||
        fail "the tasks spent nothing: the comparison proves little"
    echo "spend: one query, $(echo "$sp" | json 'len(d["agents"])') agents of period $(echo "$sp" | json 'd["period"]')"
    ctl spend | grep -q "^spend in the current period" || fail "spend header: $(ctl spend)"
    ctl spend | grep -q "^cto_agent  *$(echo "$sp" | json 'd["period"]')  .* -$" ||
        fail "spend: no cto_agent row without a limit: $(ctl spend)"
fi

# ---- (3) watch when the bus goes away and comes back ----------------------
# emadsctl itself in the background (not the ctl function's subshell)
C=("$EMADSCTL" --home "$E2E_RUN" --config "$E2E_CFG/emads.yaml")
"${C[@]}" --json watch >"$E2E_TMP/w.out" 2>"$E2E_TMP/w.err" &
w1=$!
"${C[@]}" watch --exit-on-disconnect >/dev/null 2>"$E2E_TMP/w2.err" &
w2=$!
E2E_EXTRA_PIDS="${E2E_EXTRA_PIDS:-} $w1 $w2"
sleep 1
ctl down >/dev/null
rc=0
for i in $(seq 1 200); do kill -0 "$w2" 2>/dev/null || break; sleep 0.1; done
wait "$w2" || rc=$?
[ "$rc" -eq 3 ] || fail "watch --exit-on-disconnect: exit $rc after down, want 3: $(cat "$E2E_TMP/w2.err")"
grep -q "watch: the bus at .* is not answering" "$E2E_TMP/w2.err" || fail "no disconnection line: $(cat "$E2E_TMP/w2.err")"
for i in $(seq 1 100); do grep -q "not answering; reconnecting" "$E2E_TMP/w.err" && break; sleep 0.1; done
grep -q "not answering; reconnecting" "$E2E_TMP/w.err" || fail "watch said nothing after down: $(cat "$E2E_TMP/w.err")"
kill -0 "$w1" 2>/dev/null || fail "watch exited after down without --exit-on-disconnect"
ctl up >/dev/null
for i in $(seq 1 200); do grep -q "watch: reconnected" "$E2E_TMP/w.err" && break; sleep 0.1; done
grep -q "watch: reconnected" "$E2E_TMP/w.err" || fail "watch did not see the bus back: $(cat "$E2E_TMP/w.err")"
[ "$(grep -c "not answering" "$E2E_TMP/w.err")" -eq 1 ] || fail "disconnection said more than once: $(cat "$E2E_TMP/w.err")"
kill "$w1"
wait "$w1" 2>/dev/null || true
python3 -c '
import json, sys
for line in open(sys.argv[1]):
    d = json.loads(line)
    assert d.get("state") not in ("disconnected", "reconnected"), line
' "$E2E_TMP/w.out" || fail "watch --json stdout holds more than events: $(head -c 300 "$E2E_TMP/w.out")"

# ---- (4) training stops when its client does -----------------------------
if ! $llm; then
    echo "ok (emads-test-llm not built: training part skipped)"
    exit 0
fi
echo "Should we migrate billing to Kubernetes? Assess the risk." >"$E2E_TMP/tasks.txt"
training() { ctl --json tasks --all --limit 1000 | json 'sum(1 for t in d["tasks"] if t.get("training"))'; }
# settled: the count of training tasks no longer grows (at most 40 s)
settled() {
    local last=-1 same=0 n
    for i in $(seq 1 80); do
        n=$(training)
        if [ "$n" = "$last" ]; then same=$((same + 1)); else same=0; fi
        [ $same -ge 8 ] && break
        last=$n
        sleep 0.5
    done
    echo "$n"
}
set +o pipefail
ctl train --tasks "$E2E_TMP/tasks.txt" --group 2 --rounds 30 2>"$E2E_TMP/t.err" | head -1 >/dev/null
rc=${PIPESTATUS[0]}
[ "$rc" -eq 1 ] || fail "train | head -1: exit $rc, want 1: $(cat "$E2E_TMP/t.err")"
grep -q "output closed; training .* cancelled" "$E2E_TMP/t.err" || fail "no cancellation line: $(cat "$E2E_TMP/t.err")"
n=$(settled)
[ "$n" -le 10 ] || fail "training went on after its output closed: $n training tasks (60 if never stopped)"

"$EMADSCTL" --home "$E2E_RUN" --config "$E2E_CFG/emads.yaml" \
    train --tasks "$E2E_TMP/tasks.txt" --group 2 --rounds 30 >"$E2E_TMP/t2.out" 2>"$E2E_TMP/t2.err" &
tp=$!
for i in $(seq 1 300); do grep -q "^round 1/30" "$E2E_TMP/t2.out" && break; sleep 0.1; done
grep -q "^round 1/30" "$E2E_TMP/t2.out" || fail "second run shows no progress: $(cat "$E2E_TMP/t2.err")"
kill -TERM "$tp"
rc=0
wait "$tp" || rc=$?
[ "$rc" -eq 130 ] || fail "train after SIGTERM: exit $rc, want 130: $(cat "$E2E_TMP/t2.err")"
grep -q "terminated; training .* cancelled" "$E2E_TMP/t2.err" || fail "no cancellation line: $(cat "$E2E_TMP/t2.err")"
m=$(settled)
# groups are quick: allow those that ended before the signal, and a few
# more in flight, far from the 60 tasks of a run that goes on
g=$(grep -c "^round" "$E2E_TMP/t2.out")
[ $((m - n)) -le $((2 * (g + 3))) ] || fail "training went on after SIGTERM: $((m - n)) more training tasks after $g groups: $(cat "$E2E_TMP/t2.out" "$E2E_TMP/t2.err")"
echo "ok: tasks files refused, one-line JSON, watch reconnects, training stops with its client"
