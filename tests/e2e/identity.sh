#!/usr/bin/env bash
# identity.sh - serving rights and per-instance certificates in a real
# constellation (issue 11):
#  - certified peers that are not a service's owner (emadsctl's certificate
#    and a freshly issued one) keep sending READY for ledger, orchestrator
#    and cto_agent while tasks run: they are refused, nothing is routed to
#    them, and every task ends done with the real agents' results;
#  - a second cto_agent instance with its own certificate (cto_agent.2
#    acting for cto_agent) serves; `emadsctl certs revoke cto_agent.2` while
#    tasks run cuts it off before the command returns, the first instance
#    keeps serving, and no task is lost.
. "$(dirname "$0")/lib.sh"
: "${EMADS_BUS_PROBE:?EMADS_BUS_PROBE must name tests/bus/bus_probe}"
# LLM steps that take a while, so that the revoke below happens while
# steps run on both instances
e2e_llm_server --scenario slow:1500

ctl up >/dev/null
EP="ipc://$E2E_RUN/bus.sock"
ctl certs issue fresh --for fresh >/dev/null || fail "certs issue failed"
ctl --json certs list | json '[c["name"] for c in d["certificates"] if c["state"] == "active"]' | grep -q '"fresh"' ||
    fail "certs list does not show the new certificate"

# intruders: each an echo worker that would answer anything it is given
for pair in emadsctl:ledger fresh:orchestrator emadsctl:cto_agent fresh:ledger; do
    who=${pair%%:*} svc=${pair#*:}
    "$EMADS_BUS_PROBE" echo-worker --endpoint "$EP" --home "$E2E_RUN" --name "$who" --service "$svc" \
        >"$E2E_TMP/intruder.$who.$svc.out" 2>"$E2E_TMP/intruder.$who.$svc.err" &
    E2E_EXTRA_PIDS="${E2E_EXTRA_PIDS:-} $!"
done
refused=0
for i in $(seq 1 100); do
    refused=$(ctl --json status >/dev/null 2>&1; "$EMADS_BUS_PROBE" call --endpoint "$EP" --home "$E2E_RUN" \
        --name emadsctl --service bus --body-json '{"v":1,"type":"stats"}' | json 'd["ready_refused"]')
    [ "$refused" -ge 4 ] && break
    sleep 0.05
done
[ "$refused" -ge 4 ] || fail "the intruders' READYs were not refused ($refused)"

tasks=""
for i in 1 2 3 4; do
    tasks="$tasks $(ctl submit "Should we migrate billing to Kubernetes? (#$i)")"
done
for t in $tasks; do
    st=$(wait_final "$t" 90)
    [ "$st" = done ] || fail "task $t ended $st with intruders connected"
    ctl --json result "$t" | json 'd["recommendation"]' | grep -q . ||
        fail "task $t has no recommendation: $(ctl --json result "$t")"
    ctl --json spend --task "$t" | json 'sum(sum(a["used"].values()) for a in d["agents"])' >"$E2E_TMP/used"
    [ "$(cat "$E2E_TMP/used")" -gt 0 ] || fail "task $t: the real ledger recorded no spend"
done
if grep -h "request" "$E2E_TMP"/intruder.*.err; then
    fail "a request was routed to an intruder"
fi
grep -q "refuses to let us serve 'ledger'" "$E2E_TMP/intruder.emadsctl.ledger.err" ||
    fail "the intruder was not told why: $(cat "$E2E_TMP/intruder.emadsctl.ledger.err")"
grep -q "READY refused from instance 'fresh'" "$E2E_RUN/logs/emads-bus.log" || fail "the bus log has no refusal"
echo "ok: 4 tasks done with 4 intruders refused; no request reached them"

# a second cto_agent instance with its own certificate
ctl certs issue cto_agent.2 --for cto_agent >/dev/null || fail "certs issue cto_agent.2 failed"
# the one emads-agent program (--name), or the per-agent binary of older trees
agents_dir=$(dirname "$(readlink -f "$EMADSCTL")")/../agents
if [ -x "$agents_dir/emads-agent" ]; then
    agent_cmd="$agents_dir/emads-agent --name cto_agent"
elif [ -x "$agents_dir/cto_agent" ]; then
    agent_cmd="$agents_dir/cto_agent"
else
    fail "no emads-agent or cto_agent binary in $agents_dir"
fi
# shellcheck disable=SC2086 # agent_cmd is a program and its arguments
EMADS_INSTANCE=cto_agent.2 setsid $agent_cmd --config "$E2E_CFG/emads.yaml" --home "$E2E_RUN" \
    >>"$E2E_RUN/logs/cto_agent-2.log" 2>&1 &
E2E_EXTRA_PIDS="${E2E_EXTRA_PIDS:-} $!"
w=$(wait_workers cto_agent 2 200)
[ "$w" -eq 2 ] || fail "the second instance did not register ($w workers)"
grep -q "serving 'cto_agent'" "$E2E_RUN/logs/cto_agent-2.log" || fail "the second instance does not say it serves"

tasks=""
for i in $(seq 1 6); do
    tasks="$tasks $(ctl submit "Should we adopt a service mesh? (#$i)")"
done
# until the second instance holds a step
for i in $(seq 1 100); do
    [ "$(grep -c '"model"' "$E2E_TMP/llm.log" 2>/dev/null || echo 0)" -ge 2 ] && break
    sleep 0.05
done
out=$(ctl --json certs revoke cto_agent.2) || fail "certs revoke failed: $out"
echo "$out" | json 'd["disconnected"]' | grep -q true || fail "revoke did not see the instance cut off: $out"
w=$(ctl --json status | json '[p["workers"] for p in d["processes"] if p["name"] == "cto_agent"][0]')
[ "$w" -eq 1 ] || fail "after revoke returned, the bus still has $w cto_agent workers"
running=$(for t in $tasks; do ctl --json result "$t" | json 'd["state"]'; done | grep -vc done || true)
lost=$(sed -n "s/.*(cto_agent.2 for cto_agent) of 'cto_agent' removed: certificate revoked; \([0-9]*\) request.*/\1/p" \
    "$E2E_RUN/logs/emads-bus.log")
[ -n "$lost" ] || fail "the bus log does not say it removed cto_agent.2"
for t in $tasks; do
    st=$(wait_final "$t" 90)
    [ "$st" = done ] || fail "task $t ended $st after the revoke"
done
grep -q "certificate revoked" "$E2E_RUN/logs/cto_agent-2.log" || fail "the revoked instance was not told"
ctl --json certs list | json '[c["state"] for c in d["certificates"] if c["name"] == "cto_agent.2"][0]' | grep -q revoked ||
    fail "certs list does not show cto_agent.2 revoked"
echo "ok: cto_agent.2 revoked with $running of 6 tasks unfinished and $lost step(s) in its hands:" \
    "cut off before the command returned, all tasks done"

# the certs command's contract: issue is idempotent per principal, refuses
# another principal, usage errors exit 2
out=$(ctl --json certs issue fresh --for fresh) || fail "issuing an existing certificate again failed"
echo "$out" | json 'd["created"]' | grep -q false || fail "issue again created a new key: $out"
set +e
ctl certs issue fresh --for ledger 2>/dev/null; rc=$?
ctl certs issue 'bad@name' 2>/dev/null; rc2=$?
ctl certs export fresh 2>/dev/null; rc3=$?
ctl certs revoke nobody 2>/dev/null; rc4=$?
set -e
[ $rc -eq 1 ] || fail "issue for another principal exited $rc, expected 1"
[ $rc2 -eq 2 ] && [ $rc3 -eq 2 ] || fail "usage errors exited $rc2/$rc3, expected 2"
[ $rc4 -eq 1 ] || fail "revoking an unknown certificate exited $rc4, expected 1"
ctl certs --help | grep -q "export NAME DIR" || fail "certs --help lacks export"

# an exported bundle is a run directory: an instance acting for emadsctl
# reaches the bus through DIR/bus.endpoint and DIR/certs alone
ctl certs issue ops:hostb --for emadsctl >/dev/null
ctl --json certs export ops:hostb "$E2E_TMP/bundle" >"$E2E_TMP/export.json" 2>/dev/null || fail "export failed"
for f in certs/public/bus.cert certs/private/ops:hostb.cert_secret bus.endpoint; do
    [ -s "$E2E_TMP/bundle/$f" ] || fail "export did not write $f"
done
[ "$(stat -c %a "$E2E_TMP/bundle/certs/private/ops:hostb.cert_secret")" = 600 ] || fail "exported secret is not 0600"
EMADS_INSTANCE=ops:hostb "$EMADSCTL" --home "$E2E_TMP/bundle" --config "$E2E_CFG/emads.yaml" --json spend \
    >"$E2E_TMP/remote.json" 2>"$E2E_TMP/remote.err" ||
    fail "the exported bundle does not reach the ledger: $(cat "$E2E_TMP/remote.json" "$E2E_TMP/remote.err")"
grep -q '"cto_agent"' "$E2E_TMP/remote.json" || fail "spend through the bundle lists nothing: $(cat "$E2E_TMP/remote.json")"
echo "ok: certs issue/export contract; an exported bundle used as --home reaches the bus"
