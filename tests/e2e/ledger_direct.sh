#!/usr/bin/env bash
# ledger_direct.sh - ledger.direct (issue 19), on in the shipped config:
# the agents, the orchestrator and the gateway call the ledger on its own
# CURVE endpoint, not through the bus, and the endpoint authenticates and
# checks like the bus:
#  (a) tasks and a gateway call run with every ledger call on the direct
#      endpoint (the bus routes none of them) and each is charged: the
#      ledger's task account holds what the steps' attempts say they cost,
#      and the gateway call's task what the provider reported;
#  (b) a key not in the certificate store (never issued, or revoked while
#      the ledger runs) is refused at the handshake, a
#      certified peer the access list does not name is refused its call,
#      and the endpoint serves `ledger` alone (no call to or READY for
#      another service);
#  (c) a client with cto_agent's key cannot act for coo_agent: neither by
#      naming it (act_for) nor by committing or voiding coo_agent's hold;
#  (d) with the ledger killed, a task fails "ledger unavailable" and no
#      step runs (the LLM server sees no call).
. "$(dirname "$0")/lib.sh"
: "${EMADS_BUS_PROBE:?EMADS_BUS_PROBE must name tests/bus/bus_probe}"
e2e_llm_server
grep -qx '  direct: local' "$E2E_CFG/emads.yaml" || fail "the shipped config does not set ledger.direct: local"

ctl up >/dev/null
DEP="ipc://$E2E_RUN/ledger.sock"
probe() { # probe NAME BODY_JSON [extra args]: one call to ledger on the direct endpoint
    local who=$1 body=$2
    shift 2
    "$EMADS_BUS_PROBE" call --endpoint "$DEP" --home "$E2E_RUN" --name "$who" --service ledger \
        --body-json "$body" --timeout 3000 "$@"
}
grep -q "direct endpoint: $DEP (CURVE)" "$E2E_RUN/logs/emads-ledger.log" ||
    fail "the ledger does not serve $DEP"
grep -q "calling the ledger directly at $DEP" "$E2E_RUN/logs/emads-orchestrator.log" ||
    fail "the orchestrator does not call the ledger directly"
grep -q "the ledger directly at $DEP" "$E2E_RUN/logs/cto_agent.log" ||
    fail "cto_agent does not call the ledger directly"
grep -q "calling the ledger directly at $DEP" "$E2E_RUN/logs/emads-gateway.log" ||
    fail "the gateway does not call the ledger directly"
GW_KEY=$(ctl keys issue direct --for cto_agent) || fail "keys issue failed"
GW_ADDR=$(cat "$E2E_RUN/gateway.addr")

# ---- (a) tasks, charged, with no ledger call on the bus
served() { # requests the bus has handed to the ledger
    ctl --json status | json 'sum(w.get("served", 0) for w in d.get("workers", []) if w.get("service") == "ledger")'
}
before=$(served)
tasks=""
for i in 1 2 3; do
    tasks="$tasks $(ctl submit "Should we migrate billing to Kubernetes? (#$i)")"
done
for t in $tasks; do
    st=$(wait_final "$t" 90)
    [ "$st" = done ] || fail "task $t ended $st with the direct ledger path"
done
code=$(curl -s -o "$E2E_TMP/gw.json" -w '%{http_code}' "http://$GW_ADDR/v1/chat/completions" \
    -H "Authorization: Bearer $GW_KEY" -H 'Content-Type: application/json' -H 'x-emads-task: gw-direct' \
    -d '{"model":"gpt-4o-mini","max_tokens":50,"messages":[{"role":"user","content":"hi"}]}')
[ "$code" = 200 ] || fail "the gateway call answered $code: $(cat "$E2E_TMP/gw.json")"
gw_tokens=$(json 'd["usage"]["total_tokens"]' <"$E2E_TMP/gw.json")
after=$(served)
# on the bus only the one spend query of each `ctl result` that found its
# task ended (wait_final's last); through the bus the tasks' own opens,
# reserves, commits and closes would add 8 or more each, and the gateway
# call's reserve and commit 2
[ "$after" -eq "$((before + 3))" ] ||
    fail "the bus routed $((after - before)) ledger call(s) during the tasks and the gateway call (3 are ctl's)"
got=$(ctl --json spend --task gw-direct | json 'sum(a["used"]["tokens"] for a in d["agents"])')
[ "$gw_tokens" -gt 0 ] && [ "$got" -eq "$gw_tokens" ] ||
    fail "the gateway call: the ledger charged $got tokens, the provider reported $gw_tokens"
for t in $tasks; do
    res=$(ctl --json result "$t")
    steps=$(echo "$res" | json 'sum(1 for s in d["steps"] if s.get("attempt", 0) > 0)')
    [ "$steps" -ge 3 ] || fail "task $t ran $steps steps: $res"
    want=$(echo "$res" | json 'sum(s["actual"]["tokens"] for s in d["steps"] if s.get("actual"))')
    got=$(ctl --json spend --task "$t" | json 'sum(a["used"]["tokens"] for a in d["agents"])')
    [ "$want" -gt 0 ] && [ "$got" -eq "$want" ] ||
        fail "task $t: the ledger charged $got tokens, its steps say $want"
done
echo "ok (a): 3 tasks and a gateway call done and charged, no ledger call on the bus"

# ---- (b) refused: a key outside the store, a peer the access list does not name
out=$(probe emadsctl '{"v":1,"type":"spend"}' --rogue-cert --timeout 1500) || true
echo "$out" | grep -q spend_reply && fail "a key not in the store was answered: $out"
grep -q "refused a peer at .*: unknown certificate" "$E2E_RUN/logs/emads-ledger.log" ||
    fail "the ledger does not log the refused key"
ctl certs issue fresh --for fresh >/dev/null || fail "certs issue failed"
out=$(probe fresh '{"v":1,"type":"reserve","request_id":"r-fresh","task":"t-x","step":"s","amounts":{"tokens":1}}') ||
    fail "no answer to a refused call: $out"
echo "$out" | json 'd["code"]' | grep -qx forbidden || fail "an unlisted peer's reserve was not forbidden: $out"
out=$(probe emadsctl '{"v":1,"type":"spend"}') || fail "spend on the direct endpoint failed: $out"
echo "$out" | json 'd["type"]' | grep -qx spend_reply || fail "a listed peer's spend was not answered: $out"
# a certificate revoked while the ledger runs: answered before, refused after
# (its key pair kept aside, as a host that still holds it would)
ctl certs issue cto_agent.9 --for cto_agent >/dev/null || fail "certs issue cto_agent.9 failed"
OLD="$E2E_TMP/old-host"
mkdir -p "$OLD/certs/private" "$OLD/certs/public"
cp "$E2E_RUN/certs/private/cto_agent.9.cert_secret" "$OLD/certs/private/"
cp "$E2E_RUN/certs/public/bus.cert" "$OLD/certs/public/"
spend9() {
    "$EMADS_BUS_PROBE" call --endpoint "$DEP" --home "$OLD" --name cto_agent.9 --service ledger \
        --body-json '{"v":1,"type":"spend"}' --timeout 1500
}
out=$(spend9) || true
echo "$out" | json 'd["type"]' | grep -qx spend_reply || fail "cto_agent.9 was not answered before its revocation: $out"
ctl certs revoke cto_agent.9 >/dev/null || fail "certs revoke failed"
refused=no
for i in $(seq 1 20); do
    out=$(spend9 2>/dev/null) || true
    if ! echo "$out" | grep -q spend_reply; then refused=yes; break; fi
    sleep 0.2
done
[ $refused = yes ] || fail "the direct endpoint still answers a revoked certificate: $out"
echo "revoked: $out"
[ "$(grep -c "refused a peer at .*: unknown certificate" "$E2E_RUN/logs/emads-ledger.log")" -ge 2 ] ||
    fail "the ledger does not log the revoked key's refusal"

# it serves the ledger alone: no call to, and no worker for, another service
out=$("$EMADS_BUS_PROBE" call --endpoint "$DEP" --home "$E2E_RUN" --name emadsctl --service cto_agent \
    --body-json '{"v":1,"type":"providers"}' --timeout 3000) || fail "no answer to a call for cto_agent: $out"
echo "$out" | json 'd["code"]' | grep -qx service_unavailable || fail "a call for cto_agent was not refused: $out"
out=$("$EMADS_BUS_PROBE" serve --endpoint "$DEP" --home "$E2E_RUN" --name cto_agent --service cto_agent) || true
echo "$out" | json 'd["accepted"]' | grep -qx false || fail "cto_agent could serve on the ledger's endpoint: $out"
echo "$out" | json 'd["reason"]' | grep -q "serves only 'ledger'" || fail "the refusal does not say why: $out"
echo "ok (b): unknown key refused at the handshake, unlisted principal forbidden, listed one served, other services refused"

# ---- (c) cto_agent's key cannot act as coo_agent
T=t-direct-$$
out=$(probe orchestrator "{\"v\":1,\"type\":\"open_task\",\"request_id\":\"o-$T\",\"task\":\"$T\"}")
echo "$out" | json 'd["type"]' | grep -qx open_task_ok || fail "open_task failed: $out"
out=$(probe coo_agent "{\"v\":1,\"type\":\"reserve\",\"request_id\":\"r1-$T\",\"task\":\"$T\",\"step\":\"s1\",\"amounts\":{\"tokens\":100}}")
hold=$(echo "$out" | json 'd["hold_id"]') || fail "coo_agent's reserve failed: $out"
out=$(probe cto_agent "{\"v\":1,\"type\":\"reserve\",\"request_id\":\"r2-$T\",\"task\":\"$T\",\"step\":\"s2\",\"amounts\":{\"tokens\":100},\"principal\":\"coo_agent\"}")
echo "$out" | json 'd["code"]' | grep -qx forbidden || fail "cto_agent reserved for coo_agent: $out"
out=$(probe cto_agent "{\"v\":1,\"type\":\"commit\",\"request_id\":\"c1-$T\",\"hold_id\":\"$hold\",\"actual\":{\"tokens\":5000},\"measured\":\"provider\"}")
echo "$out" | json 'd.get("code", "")' | grep -qx hold_not_found || fail "cto_agent committed coo_agent's hold: $out"
out=$(probe cto_agent "{\"v\":1,\"type\":\"void\",\"request_id\":\"v1-$T\",\"hold_id\":\"$hold\"}")
echo "$out" | json 'd.get("code", "")' | grep -qx hold_not_found || fail "cto_agent voided coo_agent's hold: $out"
sp=$(ctl --json spend --task "$T")
echo "$sp" | json '[(a["name"], a["used"]["tokens"], a["held"]["tokens"]) for a in d["agents"]]' >"$E2E_TMP/sp"
echo "$sp" | json 'sum(a["used"]["tokens"] for a in d["agents"])' | grep -qx 0 || fail "something was charged: $(cat "$E2E_TMP/sp")"
echo "$sp" | json '[a["held"]["tokens"] for a in d["agents"] if a["name"] == "coo_agent"][0]' | grep -qx 100 ||
    fail "coo_agent's hold is not intact: $(cat "$E2E_TMP/sp")"
out=$(probe coo_agent "{\"v\":1,\"type\":\"void\",\"request_id\":\"v2-$T\",\"hold_id\":\"$hold\"}")
echo "$out" | json 'd["type"]' | grep -qx void_ok || fail "coo_agent could not void its own hold: $out"
echo "ok (c): cto_agent's key neither reserves for, nor commits or voids a hold of, coo_agent"

# ---- (d) the ledger killed: fail closed
# (TERM: the supervisor restarts a ledger that dies of a signal like KILL)
pid=$(cat "$E2E_RUN/pids/emads-ledger.pid")
kill -TERM "$pid"
for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "the ledger did not die"
calls=$(grep -c '"model"' "$E2E_TMP/llm.log" || true)
if out=$(ctl --json submit --wait --timeout 40 "Should we migrate billing to Kubernetes? Assess the risk."); then
    fail "submit --wait succeeded without a ledger"
fi
[ "$(echo "$out" | json 'd["state"]')" = failed ] || fail "task not failed: $out"
echo "$out" | json 'd.get("reason", "")' | grep -q "^ledger unavailable: " ||
    fail "reason does not say the ledger is unavailable: $out"
echo "$out" | json 'all(s.get("attempt", 0) == 0 for s in d["steps"])' | grep -q true || fail "a step ran without a ledger: $out"
[ "$(grep -c '"model"' "$E2E_TMP/llm.log" || true)" -eq "$calls" ] || fail "the LLM server was called without a ledger"
echo "ok (d): with the ledger killed the task failed 'ledger unavailable' and no step ran"
