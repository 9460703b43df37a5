#!/usr/bin/env bash
# budget_retry.sh - `emadsctl budget set` resends its change with the same
# request id when the ledger's answer is lost, and the ledger makes the
# change once. The ledger is stopped (SIGSTOP) with the change in flight;
# once the bus has given its worker up (worker_lost to emadsctl, which
# sends the change again) it is continued: it reads the first request,
# then gets the resent one. The command succeeds and the journal holds one
# change.
. "$(dirname "$0")/lib.sh"

ctl up --only core >/dev/null || fail "up --only core"
ledger=$(cat "$E2E_RUN/pids/emads-ledger.pid")
ledger_workers() {
    ctl --json status | json '[w for w in d["workers"] if w["service"] == "ledger"]' |
        json 'len(d)'
}
[ "$(ledger_workers)" -eq 1 ] || fail "no ledger worker"

kill -STOP "$ledger"
ctl --json budget set agent cto_agent --max-cost-usd 0.7 >"$E2E_TMP/set.out" 2>"$E2E_TMP/set.err" &
setpid=$!
E2E_EXTRA_PIDS="${E2E_EXTRA_PIDS:-} $setpid"
# the bus gives the silent ledger up: the first try is answered worker_lost
n=1
for _ in $(seq 1 200); do
    n=$(ledger_workers)
    [ "$n" -eq 0 ] && break
    sleep 0.05
done
kill -CONT "$ledger"
[ "$n" -eq 0 ] || fail "the bus never gave the stopped ledger up"
rc=0
wait "$setpid" || rc=$?
[ "$rc" -eq 0 ] || fail "budget set exited $rc: $(cat "$E2E_TMP/set.out" "$E2E_TMP/set.err")"
[ "$(json 'd["limit"]["cost_uusd"]' <"$E2E_TMP/set.out")" -eq 700000 ] ||
    fail "budget set printed $(cat "$E2E_TMP/set.out")"
rows=$(python3 -c 'import sqlite3, sys
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
print(db.execute("SELECT count(*), count(DISTINCT request_id) FROM limit_changes WHERE scope = ? AND name = ?", ("agent", "cto_agent")).fetchone())' \
    "$E2E_RUN/ledger.db")
[ "$rows" = "(1, 1)" ] || fail "journalled changes (rows, request ids): $rows, want one"
show=$(ctl --json budget show | json '[l for l in d["limits"] if l["scope"] == "agent" and l.get("name") == "cto_agent"][0]')
[ "$(echo "$show" | json 'd["limit"]["cost_uusd"]')" -eq 700000 ] || fail "budget show: $show"
echo "budget_retry: ok"
