#!/usr/bin/env bash
# 20 tasks submitted at once all complete, and in none of them does any
# agent exceed its per-task quota in any dimension.
. "$(dirname "$0")/lib.sh"
ctl up >/dev/null

texts=("Should we migrate billing to Kubernetes?" "search the latest news on GPU prices"
       "write a slogan for our launch" "calculate how many engineers we need"
       "what is our deployment process")
pids=""
for i in $(seq 1 20); do
    ctl submit "${texts[$((i % 5))]} (#$i)" > "$E2E_TMP/submit.$i" &
    pids="$pids $!"
done
for p in $pids; do wait "$p" || fail "a submit failed"; done

for i in $(seq 1 20); do
    t=$(cat "$E2E_TMP/submit.$i")
    echo "$t" | grep -q '^t-[0-9a-f]\{12\}$' || fail "submit $i printed '$t'"
    st=$(wait_final "$t" 90)
    [ "$st" = done ] || fail "task $t ended $st"
    ctl --json spend --task "$t" | json '[(a["name"], k) for a in d["agents"] for k in a["used"] if a["limit"][k] >= 0 and a["used"][k] > a["limit"][k]]' > "$E2E_TMP/over"
    [ "$(cat "$E2E_TMP/over")" = "[]" ] || fail "task $t: over quota: $(cat "$E2E_TMP/over")"
done
[ "$(ctl --json tasks --limit 100 --state done | json 'len(d["tasks"])')" -eq 20 ] || fail "tasks does not list 20 done tasks"
echo "concurrent: ok"
