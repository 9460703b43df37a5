#!/bin/sh
# bus_system.sh - system tests of emads-bus with real processes on ipc://
# endpoints in a temporary run directory.
#
#   bus_system.sh TEST EMADS_BUS BUS_PROBE CONFIG
#
# TEST is one of: routing restart security serving publishing reload handshake
# flood events daemon many. Every process the
# test starts is killed on exit, pass or fail.
set -u
T=$1
BUS=$2
PROBE=$3
R=$(mktemp -d /tmp/emads-bus-test.XXXXXX)
# a copy of the config with every /metrics on a free port, so the buses of
# this test (and any running constellation) do not compete for one
mkdir "$R/cfg"
cp -r "$(dirname "$4")"/. "$R/cfg/"
CONFIG="$R/cfg/$(basename "$4")"
E2E_HELPERS_ONLY=1 . "$(dirname "$0")/../e2e/lib.sh" # edit_cfg
edit_cfg "$CONFIG" 's/^\(  [a-z]*: "127\.0\.0\.1:\)[0-9]*"/\10"/'
# Under AddressSanitizer freed memory sits in a quarantine (256 MiB by
# default) that would hide whether the bus's own memory stays bounded.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=8"
EP="ipc://$R/bus.sock"
PIDS=""
BUS_PID=""

cleanup() {
    for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$R"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
    echo "FAIL [$T]: $*"
    echo "--- bus log"
    cat "$R/bus.log" 2>/dev/null | tail -40
    for f in "$R"/*.err; do
        [ -f "$f" ] && { echo "--- $f"; tail -20 "$f"; }
    done
    exit 1
}
ok() { echo "ok [$T]: $*"; }

# Every foreground probe is bounded: a hang fails the test naming the step
# instead of stalling the whole suite.
bounded() {
    timeout -k 2 30 "$@"
    rc=$?
    [ $rc -eq 124 ] || [ $rc -eq 137 ] && echo "HUNG [$T]: $*" >&2 && echo "HUNG: $*" >>"$R/hung.err"
    return $rc
}

probe() {
    c=$1
    shift
    bounded "$PROBE" "$c" --endpoint "$EP" --home "$R" "$@"
}
# call NAME SERVICE BODY [extra args]
call() {
    n=$1 s=$2 b=$3
    shift 3
    bounded "$PROBE" call --endpoint "$EP" --home "$R" --name "$n" --service "$s" --body-json "$b" "$@"
}

start_bus() {
    "$BUS" --home "$R" --endpoint "$EP" --foreground "$@" 2>>"$R/bus.log" &
    BUS_PID=$!
    PIDS="$PIDS $BUS_PID"
    i=0
    while [ $i -lt 50 ]; do
        if call emadsctl bus '{"v":1,"type":"ping"}' --timeout 300 2>/dev/null | grep -q '"pong"'; then
            return 0
        fi
        i=$((i + 1))
        sleep 0.1
    done
    fail "the bus did not answer ping"
}

# start_worker NAME SERVICE [extra args]: sets WPID
start_worker() {
    n=$1 s=$2
    shift 2
    "$PROBE" echo-worker --endpoint "$EP" --home "$R" --name "$n" --service "$s" "$@" \
        >"$R/$n.out" 2>"$R/$n.err" &
    WPID=$!
    PIDS="$PIDS $WPID"
}

# wait_workers SERVICE COUNT
wait_workers() {
    i=0
    while [ $i -lt 50 ]; do
        if call emadsctl bus '{"v":1,"type":"ping"}' --timeout 300 2>/dev/null |
            grep -q "\"$1\":{\"workers\":$2,"; then
            return 0
        fi
        i=$((i + 1))
        sleep 0.1
    done
    fail "service $1 never had $2 worker(s)"
}

# stop_bus: SIGTERM must make the bus exit 0, with no sanitizer report
stop_bus() {
    kill -TERM "$BUS_PID"
    i=0
    while kill -0 "$BUS_PID" 2>/dev/null && [ $i -lt 100 ]; do
        i=$((i + 1))
        sleep 0.1
    done
    kill -0 "$BUS_PID" 2>/dev/null && fail "the bus did not stop within 10 s of SIGTERM"
    wait "$BUS_PID"
    rc=$?
    [ "$rc" -eq 0 ] || fail "the bus exited with status $rc on SIGTERM"
    if grep -q "Sanitizer\|runtime error" "$R/bus.log"; then
        fail "sanitizer report in the bus log"
    fi
    ok "the bus stops cleanly on SIGTERM"
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

bounded "$PROBE" certs --home "$R" emadsctl orchestrator ledger cto_agent coo_agent reconcile_gpt \
    w1 w2 w3 w4 w5 flooder >/dev/null || fail "cannot create certificates"

# stat NAME: one counter of the bus's stats_reply
stat() {
    call emadsctl bus '{"v":1,"type":"stats"}' | sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"
}
# wait_log PATTERN FILE: until FILE has a line matching PATTERN (at most 5 s)
wait_log() {
    i=0
    while ! grep -q "$1" "$2" && [ $i -lt 50 ]; do
        i=$((i + 1))
        sleep 0.1
    done
    grep -q "$1" "$2" || fail "no '$1' in $2"
}

case "$T" in
routing)
    start_bus
    start_worker w1 echo
    W1=$WPID
    start_worker w2 echo
    W2=$WPID
    wait_workers echo 2
    call emadsctl echo '{"v":1,"type":"hello"}' --count 10 >"$R/ten.out" || fail "calls failed"
    [ "$(grep -c echo_reply "$R/ten.out")" -eq 10 ] || fail "not 10 replies: $(cat "$R/ten.out")"
    n1=$(grep -c "\"pid\":$W1," "$R/ten.out")
    n2=$(grep -c "\"pid\":$W2," "$R/ten.out")
    [ "$n1" -ge 3 ] && [ "$n2" -ge 3 ] || fail "load not shared: w1=$n1 w2=$n2"
    ok "two workers share the load (w1=$n1, w2=$n2)"

    # a slow request; kill the worker that holds it
    call emadsctl echo '{"v":1,"type":"slow","delay_ms":60000}' --timeout 20000 \
        >"$R/slow.out" 2>&1 &
    CALL=$!
    i=0
    VICTIM=""
    while [ $i -lt 50 ] && [ -z "$VICTIM" ]; do
        grep -q "type slow" "$R/w1.err" && VICTIM=$W1 SURVIVOR=$W2
        grep -q "type slow" "$R/w2.err" && VICTIM=$W2 SURVIVOR=$W1
        i=$((i + 1))
        sleep 0.1
    done
    [ -n "$VICTIM" ] || fail "no worker received the slow request"
    t0=$(date +%s%N)
    kill -9 "$VICTIM"
    wait "$CALL" || fail "the slow call did not end with a reply"
    t1=$(date +%s%N)
    grep -q '"code":"worker_lost"' "$R/slow.out" || fail "expected worker_lost, got: $(cat "$R/slow.out")"
    ok "SIGKILL mid-request gives worker_lost after $(((t1 - t0) / 1000000)) ms"
    call emadsctl echo '{"v":1,"type":"hello"}' --count 4 >"$R/after.out" || fail "calls after kill failed"
    [ "$(grep -c "\"pid\":$SURVIVOR," "$R/after.out")" -eq 4 ] ||
        fail "later requests did not all go to the survivor: $(cat "$R/after.out")"
    ok "later requests go to the other worker"

    # an idle worker killed: the bus drops it as soon as its connection
    # closes, not at its heartbeat expiry. A newly registered worker is
    # first in line, so without that the next request would go to the dead
    # one and end in worker_lost or a timeout (the calls' deadline is below
    # the heartbeat expiry of 3 intervals).
    start_worker w5 echo
    W5=$WPID
    wait_workers echo 2
    kill -9 "$W5"
    wait "$W5" 2>/dev/null
    call emadsctl echo '{"v":1,"type":"hello"}' --count 6 --timeout 2000 >"$R/fresh.out" ||
        fail "calls right after a kill failed: $(cat "$R/fresh.out")"
    [ "$(grep -c "\"pid\":$SURVIVOR," "$R/fresh.out")" -eq 6 ] ||
        fail "requests right after the kill did not all go to the survivor: $(cat "$R/fresh.out")"
    ok "requests right after a SIGKILL all go to the surviving worker"

    call emadsctl nobody '{"v":1,"type":"x"}' --timeout 10000 >"$R/unavail.out"
    grep -q '"code":"service_unavailable"' "$R/unavail.out" ||
        fail "no service_unavailable for a service without workers: $(cat "$R/unavail.out")"
    ok "a service with no worker answers service_unavailable"
    call emadsctl echo '{"v":1,"type":"hello","partials":3}' >"$R/partial.out"
    grep -q '"partials_seen":3' "$R/partial.out" || fail "partials not delivered: $(cat "$R/partial.out")"
    ok "PARTIAL frames reach the caller before the REPLY"

    # capacity: a worker declaring capacity 2 holds two requests at once,
    # a third waits in the queue
    start_worker w3 cap --capacity 2
    wait_workers cap 1
    CALLS=""
    for k in 1 2 3; do
        call emadsctl cap '{"v":1,"type":"slow","delay_ms":1500}' --timeout 10000 >"$R/cap$k.out" &
        CALLS="$CALLS $!"
    done
    i=0
    seen=""
    while [ $i -lt 30 ] && [ -z "$seen" ]; do
        call emadsctl bus '{"v":1,"type":"ping"}' | grep -q '"cap":{"workers":1,"inflight":2,"queued":1[,}]' && seen=1
        i=$((i + 1))
        sleep 0.05
    done
    [ -n "$seen" ] || fail "capacity 2 not honoured"
    for p in $CALLS; do wait "$p"; done
    [ "$(cat "$R"/cap?.out | grep -c echo_reply)" -eq 3 ] || fail "capacity calls failed: $(cat "$R"/cap?.out)"
    ok "a worker gets at most its declared capacity; the rest waits and is served"

    start_worker w4 multi --capacity 8
    W4=$WPID
    wait_workers multi 1
    probe multi --name emadsctl --service multi --count 8 --timeout 5000 >"$R/multi.out" ||
        fail "requests in flight at once: $(cat "$R/multi.out")"
    grep -q '"first": 7' "$R/multi.out" || fail "replies did not come back out of order: $(cat "$R/multi.out")"
    ok "8 requests in flight on one client, each reply matched by correlation id $(cat "$R/multi.out")"
    call emadsctl bus '{"v":1,"type":"nonsense"}' | grep -q '"code":"unknown_type"' ||
        fail "bus service accepted an unknown command"
    call emadsctl echo '{"v":1,"type":"slow","delay_ms":60000}' --timeout 1000 >"$R/to.out"
    grep -q '"code":"timeout"' "$R/to.out" || fail "client timeout not reported: $(cat "$R/to.out")"
    ok "a client deadline ends the request with timeout"

    # a worker hung but still connected (SIGSTOP): no disconnection to see,
    # so only its missed heartbeats (3 intervals) can end what it holds. The
    # caller's deadline is well above that, so a timeout here means the
    # heartbeat expiry did not work.
    call emadsctl multi '{"v":1,"type":"slow","delay_ms":60000}' --timeout 15000 >"$R/hung.out" 2>&1 &
    CALL=$!
    i=0
    while [ $i -lt 50 ] && ! grep -q "type slow" "$R/w4.err"; do
        i=$((i + 1))
        sleep 0.1
    done
    grep -q "type slow" "$R/w4.err" || fail "the worker did not receive the slow request"
    kill -STOP "$W4"
    wait "$CALL" || fail "the call to a hung worker did not end with a reply"
    kill -9 "$W4"
    grep -q '"code":"worker_lost"' "$R/hung.out" || fail "expected worker_lost from a hung worker, got: $(cat "$R/hung.out")"
    ok "a hung worker is dropped after missing its heartbeats; its request gets worker_lost"
    ;;

restart)
    start_bus
    start_worker w1 echo
    W1=$WPID
    wait_workers echo 1
    call emadsctl echo '{"v":1,"type":"hello"}' | grep -q "\"pid\":$W1," || fail "first worker did not answer"
    kill -TERM "$W1"
    wait "$W1" 2>/dev/null
    start_worker w1 echo
    W1B=$WPID
    wait_workers echo 1
    call emadsctl echo '{"v":1,"type":"hello"}' | grep -q "\"pid\":$W1B," || fail "restarted worker did not serve"
    ok "a restarted worker registers and serves"

    kill -9 "$BUS_PID"
    wait "$BUS_PID" 2>/dev/null
    sleep 1
    start_bus
    i=0
    served=""
    while [ $i -lt 20 ] && [ -z "$served" ]; do
        call emadsctl echo '{"v":1,"type":"hello"}' --timeout 2000 | grep -q "\"pid\":$W1B," && served=1
        i=$((i + 1))
    done
    [ -n "$served" ] || fail "the worker did not come back after the bus restarted"
    ok "after a bus restart the worker reconnects and serves again"

    # a longer outage: the worker takes the bus as lost, then registers
    # again with back-off once it is back
    kill -9 "$BUS_PID"
    wait "$BUS_PID" 2>/dev/null
    sleep 4.5
    start_bus
    i=0
    served=""
    while [ $i -lt 20 ] && [ -z "$served" ]; do
        call emadsctl echo '{"v":1,"type":"hello"}' --timeout 2000 | grep -q "\"pid\":$W1B," && served=1
        i=$((i + 1))
    done
    [ -n "$served" ] || fail "the worker did not register again after a long outage"
    grep -q "broker silent" "$R/w1.err" || fail "the worker did not notice the outage"
    if grep -q "refuses" "$R/w1.err"; then
        fail "the worker warns of a refusal after reconnecting: $(grep refuses "$R/w1.err")"
    fi
    [ "$(grep -c "registered with the bus; serving 'echo'" "$R/w1.err")" -ge 3 ] ||
        fail "the worker did not say it serves again after each restart"
    ok "after a long outage the worker registers again and serves"
    ;;

security)
    start_bus --config "$CONFIG"
    start_worker cto_agent cto_agent
    wait_workers cto_agent 1
    # the control: the same raw request with a certificate in the store is
    # answered, so the refusals below are the handshake's doing
    probe call --name emadsctl --service bus --raw --timeout 3000 >"$R/raw.out"
    grep -q '"received": 5' "$R/raw.out" || fail "a raw request with a known certificate got no reply: $(cat "$R/raw.out")"
    probe call --name emadsctl --service cto_agent --no-cert --timeout 1500 >"$R/nocert.out"
    grep -q '"received": 0' "$R/nocert.out" || fail "a client without certificate got an answer"
    ok "a client without certificate is served nothing"
    probe call --name orchestrator --service cto_agent --rogue-cert --timeout 1500 >"$R/rogue.out"
    grep -q '"received": 0' "$R/rogue.out" || fail "a client with an unknown certificate got an answer"
    grep -q "unknown certificate" "$R/bus.log" || fail "the refusal was not logged"
    ok "a client whose certificate is not in the store is served nothing"

    call orchestrator cto_agent '{"v":1,"type":"step","sender":"emadsctl","name":"emadsctl"}' >"$R/id.out"
    grep -q '"sender":"orchestrator"' "$R/id.out" || fail "sender not stamped from certificate: $(cat "$R/id.out")"
    ok "the worker sees the certificate's name, not the one in the body"

    call emadsctl cto_agent '{"v":1,"type":"step","sender":"orchestrator"}' >"$R/deny.out"
    grep -q '"code":"forbidden"' "$R/deny.out" || fail "access list not enforced: $(cat "$R/deny.out")"
    grep -q "emadsctl" "$R/deny.out" || fail "forbidden reply does not name the caller"
    ok "a call the access list does not allow gets forbidden"

    call orchestrator cto_agent '[1,2,3]' >"$R/bad.out"
    grep -q '"code":"malformed"' "$R/bad.out" || fail "a body that is not a map was routed: $(cat "$R/bad.out")"
    ok "a body without a type is refused as malformed"

    # a service whose access list names who may serve it ("ready")
    cp -r "$(dirname "$CONFIG")" "$R/config"
    echo '  - {service: coo_agent, serve: [w2]}' >>"$R/config/$(basename "$CONFIG")"
    EP3="ipc://$R/ready.sock"
    mkdir "$R/third"
    cp -r "$R/certs" "$R/third/certs"
    "$BUS" --home "$R/third" --endpoint "$EP3" --foreground --config "$R/config/$(basename "$CONFIG")" \
        2>"$R/third.log" &
    PIDS="$PIDS $!"
    "$PROBE" echo-worker --endpoint "$EP3" --home "$R/third" --name w1 --service coo_agent \
        >"$R/intruder.out" 2>"$R/intruder.err" &
    PIDS="$PIDS $!"
    sleep 2.5
    bounded "$PROBE" call --endpoint "$EP3" --home "$R/third" --name orchestrator --service coo_agent \
        --body-json '{"v":1,"type":"step"}' --timeout 5000 >"$R/intr.out"
    grep -q '"code":"service_unavailable"' "$R/intr.out" ||
        fail "a worker the access list does not name was given a request: $(cat "$R/intr.out")"
    grep -q "may not serve 'coo_agent'" "$R/third.log" || fail "the refusal was not logged"
    refusals=$(grep -c "may not serve" "$R/third.log")
    [ "$refusals" -le 12 ] || fail "the refused worker floods the bus ($refusals refusals logged)"
    "$PROBE" echo-worker --endpoint "$EP3" --home "$R/third" --name w2 --service coo_agent \
        >"$R/legit.out" 2>"$R/legit.err" &
    PIDS="$PIDS $!"
    bounded "$PROBE" call --endpoint "$EP3" --home "$R/third" --name orchestrator --service coo_agent \
        --body-json '{"v":1,"type":"step"}' --timeout 5000 | grep -q '"sender":"orchestrator"' ||
        fail "the worker the access list names does not serve"
    ok "a serve rule lets a principal other than the service's own serve it"

    bounded "$PROBE" certs --home "$R" latecomer >/dev/null
    call latecomer bus '{"v":1,"type":"ping"}' --timeout 3000 | grep -q '"pong"' ||
        fail "a certificate added while the bus runs is not accepted"
    ok "a certificate added while the bus runs is accepted"

    EP2="ipc://$R/insecure.sock"
    mkdir "$R/other"
    "$BUS" --home "$R/other" --endpoint "$EP2" --foreground --insecure 2>"$R/insecure.log" &
    PIDS="$PIDS $!"
    sleep 0.5
    grep -q "INSECURE" "$R/insecure.log" || fail "--insecure does not warn"
    bounded "$PROBE" call --endpoint "$EP2" --home "$R" --name emadsctl --service bus --insecure \
        --body-json '{"v":1,"type":"ping"}' | grep -q '"curve":false' || fail "insecure bus does not serve"
    ok "--insecure serves and warns loudly"
    ;;

serving)
    start_bus --config "$CONFIG"
    bounded "$PROBE" certs --home "$R" --for w1 fresh >/dev/null || fail "cannot issue a fresh certificate"
    # every identity of the store but the owner, a freshly issued one included
    ids=$(ls "$R/certs/public" | sed -n 's/\.cert$//p' | grep -v '^bus$')
    echo "$ids" | grep -q '^fresh$' && echo "$ids" | grep -q '^emadsctl$' || fail "store lacks identities: $ids"
    refused=0
    for svc in ledger orchestrator cto_agent coo_agent reconcile_gpt; do
        for who in $ids; do
            [ "$who" = "$svc" ] && continue
            probe serve --name "$who" --service "$svc" --timeout 3000 >"$R/serve.out" ||
                fail "no answer to READY for $svc from $who: $(cat "$R/serve.out")"
            grep -q '"accepted": false' "$R/serve.out" ||
                fail "$who may serve $svc: $(cat "$R/serve.out")"
            grep -q "may not serve '$svc'" "$R/serve.out" || fail "no reason given: $(cat "$R/serve.out")"
            refused=$((refused + 1))
        done
    done
    [ "$(stat ready_refused)" -eq "$refused" ] ||
        fail "ready_refused is $(stat ready_refused), expected $refused"
    grep -q "READY refused from instance 'fresh' at .*'w1' may not serve 'ledger'" "$R/bus.log" ||
        fail "the refusal is not logged with the instance and principal"
    ok "$refused READYs from non-owners refused with DISCONNECT and a reason, counted, logged"

    probe serve --name cto_agent --service cto_agent --timeout 3000 | grep -q '"accepted": true' ||
        fail "the owner's READY is not acknowledged"
    ok "the owner's READY is acknowledged with a HEARTBEAT"

    # the owner and two intruders (an echo worker keeps retrying READY);
    # every request reaches the owner
    start_worker cto_agent cto_agent
    OWNER=$WPID
    start_worker emadsctl cto_agent
    start_worker fresh cto_agent
    wait_workers cto_agent 1
    call orchestrator cto_agent '{"v":1,"type":"step"}' --count 20 >"$R/owner.out" || fail "calls failed"
    [ "$(grep -c "\"pid\":$OWNER," "$R/owner.out")" -eq 20 ] ||
        fail "not every request reached the owner: $(cat "$R/owner.out")"
    call emadsctl bus '{"v":1,"type":"ping"}' | grep -q '"cto_agent":{"workers":1,' ||
        fail "an intruder is registered: $(call emadsctl bus '{"v":1,"type":"ping"}')"
    wait_log "refuses to let us serve 'cto_agent'" "$R/emadsctl.err"
    [ "$(grep -c "refuses" "$R/emadsctl.err")" -eq 1 ] || fail "the refused worker repeats its warning"
    grep -q "serving 'cto_agent'" "$R/emadsctl.err" && fail "a refused worker says it is serving"
    wait_log "serving 'cto_agent'" "$R/cto_agent.err"
    ok "with intruders connected, 20/20 requests reach the owner; the intruders say they are refused, once"

    # a second instance of cto_agent with its own certificate serves too,
    # and its caller's instance reaches the worker
    bounded "$PROBE" certs --home "$R" --for cto_agent cto_agent.2 >/dev/null
    bounded "$PROBE" certs --home "$R" --for orchestrator orchestrator.b >/dev/null
    start_worker cto_agent.2 cto_agent
    wait_workers cto_agent 2
    call emadsctl bus '{"v":1,"type":"ping"}' | grep -q '"instances":\["cto_agent","cto_agent.2"\]\|"instances":\["cto_agent.2","cto_agent"\]' ||
        fail "ping does not list both instances: $(call emadsctl bus '{"v":1,"type":"ping"}')"
    call orchestrator.b cto_agent '{"v":1,"type":"step"}' --count 4 >"$R/inst.out"
    [ "$(grep -c '"sender":"orchestrator","instance":"orchestrator.b"' "$R/inst.out")" -eq 4 ] ||
        fail "the worker did not see principal and instance: $(cat "$R/inst.out")"
    ok "an instance serves for its principal; callers are stamped with principal and instance"
    ;;

publishing)
    start_bus --config "$CONFIG"
    "$PROBE" listen --endpoint "$EP" --home "$R" --name emadsctl --prefix "" --count 3 \
        --timeout 15000 >"$R/listen.out" 2>"$R/listen.err" &
    L=$!
    PIDS="$PIDS $L"
    sleep 0.5
    for t in alert.overrun spend.commit task.done step.done train.done; do
        for who in w2 emadsctl cto_agent; do
            bounded "$PROBE" publish --endpoint "$EP" --home "$R" --name "$who" --topic "$t" \
                --body-json "{\"v\":1,\"type\":\"event\",\"topic\":\"$t\"}"
        done
    done
    bounded "$PROBE" publish --endpoint "$EP" --home "$R" --name ledger --topic alert.warn \
        --body-json '{"v":1,"type":"event","topic":"alert.warn"}'
    bounded "$PROBE" publish --endpoint "$EP" --home "$R" --name orchestrator --topic task.done \
        --body-json '{"v":1,"type":"event","topic":"task.done"}'
    bounded "$PROBE" publish --endpoint "$EP" --home "$R" --name w2 --topic custom.note \
        --body-json '{"v":1,"type":"event","topic":"custom.note"}'
    wait "$L" || fail "the subscriber did not get the 3 genuine events: $(cat "$R/listen.out")"
    [ "$(grep -c '"topic"' "$R/listen.out")" -eq 3 ] || fail "forged events delivered: $(cat "$R/listen.out")"
    grep -q '"topic": "alert.warn", "sender": "ledger"' "$R/listen.out" || fail "the ledger's alert is missing"
    grep -q '"topic": "task.done", "sender": "orchestrator"' "$R/listen.out" || fail "the orchestrator's task event is missing"
    grep -q '"topic": "custom.note", "sender": "w2"' "$R/listen.out" || fail "an unowned topic is refused"
    [ "$(stat events_refused)" -eq 15 ] || fail "events_refused $(stat events_refused), expected 15"
    grep -q "event refused: 'w2' .* may not publish 'alert.overrun'" "$R/bus.log" || fail "the refusal is not logged"
    ok "forged alert/spend/task/step/train events from non-owners are dropped, counted and logged"
    ;;

reload)
    Y="$R/config/$(basename "$CONFIG")"
    cp -r "$(dirname "$CONFIG")" "$R/config"
    cp "$Y" "$R/good.yaml"
    start_bus --config "$Y"
    bounded "$PROBE" certs --home "$R" --for cto_agent cto_agent.2 >/dev/null
    start_worker cto_agent cto_agent
    W1=$WPID
    start_worker cto_agent.2 cto_agent
    wait_workers cto_agent 2
    # one request held by each instance; one is about to be revoked
    CALLS=""
    for k in 1 2; do
        call orchestrator cto_agent '{"v":1,"type":"step","delay_ms":4000}' --timeout 15000 >"$R/held$k.out" &
        CALLS="$CALLS $!"
    done
    wait_log "type step" "$R/cto_agent.2.err"
    # a subscriber whose certificate is revoked with it
    "$PROBE" listen --endpoint "$EP" --home "$R" --name w3 --prefix "" --count 1 \
        --timeout 6000 >"$R/w3.out" 2>"$R/w3.err" &
    LW3=$!
    PIDS="$PIDS $LW3"
    wait_log listening "$R/w3.out"
    cp "$R/certs/private/cto_agent.2.cert_secret" "$R/kept.cert_secret"
    bounded "$PROBE" revoke --home "$R" cto_agent.2 || fail "revoke failed"
    bounded "$PROBE" revoke --home "$R" w3 || fail "revoke failed"
    [ -f "$R/certs/revoked/cto_agent.2.cert" ] || fail "the revoked certificate was not moved to certs/revoked"
    kill -HUP "$BUS_PID"
    wait_log "cut off: its certificate was revoked" "$R/bus.log"
    call emadsctl bus '{"v":1,"type":"ping"}' | grep -q '"cto_agent":{"workers":1,.*"instances":\["cto_agent"\]' ||
        fail "the revoked instance is still registered: $(call emadsctl bus '{"v":1,"type":"ping"}')"
    for p in $CALLS; do wait "$p"; done
    lost=$(cat "$R"/held?.out | grep -c worker_lost || true)
    done_=$(cat "$R"/held?.out | grep -c echo_reply || true)
    [ $((lost + done_)) -eq 2 ] && [ "$lost" -eq 1 ] ||
        fail "requests held by the revoked instance not answered: $(cat "$R"/held?.out)"
    call orchestrator cto_agent '{"v":1,"type":"step"}' --count 6 >"$R/after.out"
    [ "$(grep -c "\"pid\":$W1," "$R/after.out")" -eq 6 ] || fail "the other instance does not serve: $(cat "$R/after.out")"
    wait_log "refuses to let us serve 'cto_agent': certificate revoked" "$R/cto_agent.2.err"
    ok "revoke + SIGHUP cuts one instance off at once ($lost held request(s) worker_lost), the other serves"
    for k in 1 2 3 4 5; do
        bounded "$PROBE" publish --endpoint "$EP" --home "$R" --name w2 --topic custom.after \
            --body-json '{"v":1,"type":"event","topic":"custom.after"}'
    done
    wait "$LW3" && fail "a revoked subscriber still got an event: $(cat "$R/w3.out")"
    ok "a revoked subscriber gets no event, even though its connection stays open"
    # its key cannot come back in
    mkdir -p "$R/rogue/certs/private" "$R/rogue/certs/public"
    cp "$R/kept.cert_secret" "$R/rogue/certs/private/cto_agent.2.cert_secret"
    cp "$R/certs/public/bus.cert" "$R/rogue/certs/public/"
    bounded "$PROBE" call --endpoint "$EP" --home "$R/rogue" --name cto_agent.2 --service bus \
        --raw --timeout 1500 >"$R/back.out"
    grep -q '"received": 0' "$R/back.out" || fail "a revoked key got an answer"
    wait_log "revoked certificate" "$R/bus.log"
    ok "a revoked key reconnecting is refused by ZAP, and the log says why"

    # a broken access list is refused; the old one stays in force
    echo '  - {service: nowhere, command: step, names: [w1]}' >>"$Y"
    kill -HUP "$BUS_PID"
    wait_log "does not load; the access list in force is kept" "$R/bus.log"
    call orchestrator cto_agent '{"v":1,"type":"step"}' | grep -q echo_reply ||
        fail "a call allowed before the broken reload is refused"
    call w1 cto_agent '{"v":1,"type":"step"}' | grep -q '"code":"forbidden"' || fail "w1 was allowed"
    ok "SIGHUP with a broken access list keeps the old one"
    # a good one: the newly granted identity calls at once
    cp "$R/good.yaml" "$Y"
    echo '  - {service: cto_agent, command: step, names: [w1]}' >>"$Y"
    n=$(grep -c "reloaded:" "$R/bus.log")
    kill -HUP "$BUS_PID"
    i=0
    while [ "$(grep -c "reloaded:" "$R/bus.log")" -le "$n" ] && [ $i -lt 50 ]; do
        i=$((i + 1))
        sleep 0.1
    done
    call w1 cto_agent '{"v":1,"type":"step"}' | grep -q echo_reply || fail "w1 not allowed after the reload"
    ok "SIGHUP with a good access list: a newly granted identity calls at once"
    ;;

handshake)
    # over tcp, so that peers have an address to name
    "$BUS" --home "$R" --endpoint 'tcp://127.0.0.1:*' --foreground 2>>"$R/bus.log" &
    BUS_PID=$!
    PIDS="$PIDS $BUS_PID"
    wait_log "serving on tcp://" "$R/bus.log"
    EP=$(sed -n 's/.*serving on \(tcp:[^ ]*\) .*/\1/p' "$R/bus.log")
    probe call --name emadsctl --service bus --rogue-cert --timeout 1500 | grep -q '"received": 0' ||
        fail "a peer with an unknown key got an answer"
    wait_log "refused a peer at 127.0.0.1: unknown certificate" "$R/bus.log"
    ok "a peer with an unknown key: the bus logs the refusal with its address"
    probe call --name emadsctl --service bus --wrong-bus-key --timeout 1000 | grep -q '"received": 0' ||
        fail "a peer using another server key got an answer"
    # the first failure may be logged without address (gone before the bus
    # read it); the peer retries every 100 ms
    wait_log "CURVE handshake failed with a peer at 127.0.0.1:[0-9]* .*another server key" "$R/bus.log"
    probe call --name emadsctl --service bus --no-cert --timeout 1000 | grep -q '"received": 0' ||
        fail "a peer without CURVE got an answer"
    # the server sees the mechanism mismatch, or the peer seeing it first and hanging up
    wait_log "CURVE handshake failed with a peer at 127.0.0.1:[0-9]* .*\(does not use CURVE\|may not use CURVE\)" "$R/bus.log"
    [ "$(stat handshake_failed)" -ge 2 ] || fail "handshake failures not counted: $(stat handshake_failed)"
    [ "$(stat auth_denied)" -ge 1 ] || fail "ZAP refusals not counted"
    ok "handshakes that fail before ZAP (wrong bus key, no CURVE) are logged with the peer's address and counted"
    ;;

flood)
    start_bus
    start_worker w1 echo
    wait_workers echo 1
    before=$(rss_kib "$BUS_PID")
    "$PROBE" flood --endpoint "$EP" --home "$R" --name flooder --count 10000 >"$R/flood.out" 2>&1 &
    FLOOD=$!
    PIDS="$PIDS $FLOOD"
    good=0
    i=0
    while [ $i -lt 20 ]; do
        call emadsctl echo '{"v":1,"type":"hello"}' --timeout 5000 | grep -q echo_reply && good=$((good + 1))
        i=$((i + 1))
    done
    wait "$FLOOD" || fail "the flooder failed"
    call emadsctl echo '{"v":1,"type":"hello"}' --count 5 | grep -c echo_reply | grep -q 5 ||
        fail "the bus does not serve after the flood"
    [ "$good" -eq 20 ] || fail "only $good of 20 calls succeeded during the flood"
    after=$(rss_kib "$BUS_PID")
    call emadsctl bus '{"v":1,"type":"stats"}' >"$R/stats.out"
    malformed=$(sed -n 's/.*"malformed":\([0-9]*\).*/\1/p' "$R/stats.out")
    [ "${malformed:-0}" -ge 5000 ] || fail "malformed messages not counted: $(cat "$R/stats.out")"
    growth=$((after - before))
    [ "$growth" -lt 51200 ] || fail "bus memory grew by $growth KiB"
    ok "20/20 calls served during a flood of $(cat "$R/flood.out"); $malformed counted; RSS $before -> $after KiB"
    ;;

events)
    start_bus
    "$PROBE" listen --endpoint "$EP" --home "$R" --name emadsctl --prefix alert. --count 1 \
        --timeout 8000 >"$R/listen.out" 2>"$R/listen.err" &
    L=$!
    PIDS="$PIDS $L"
    i=0
    while kill -0 "$L" 2>/dev/null && [ $i -lt 20 ]; do
        bounded "$PROBE" publish --endpoint "$EP" --home "$R" --name w2 --topic task.started \
            --body-json '{"v":1,"type":"event","topic":"task.started"}'
        bounded "$PROBE" publish --endpoint "$EP" --home "$R" --name w2 --topic alert.warn \
            --body-json '{"v":1,"type":"event","topic":"alert.warn","sender":"ledger"}'
        i=$((i + 1))
    done
    wait "$L" || fail "the subscriber got no event: $(cat "$R/listen.out")"
    grep -q '"topic": "alert.warn", "sender": "w2"' "$R/listen.out" ||
        fail "event not delivered with the publisher's name: $(cat "$R/listen.out")"
    grep -q 'task.started' "$R/listen.out" && fail "an event outside the subscription was delivered"
    ok "events reach subscribers of their prefix only, stamped with the publisher's name"

    # a subscriber keeps its subscription across a bus restart
    "$PROBE" listen --endpoint "$EP" --home "$R" --name orchestrator --prefix task. --count 2 \
        --timeout 30000 >"$R/listen2.out" 2>"$R/listen2.err" &
    L2=$!
    PIDS="$PIDS $L2"
    i=0
    while ! grep -q '"topic"' "$R/listen2.out" && [ $i -lt 20 ]; do
        bounded "$PROBE" publish --endpoint "$EP" --home "$R" --name w2 --topic task.before \
            --body-json '{"v":1,"type":"event","topic":"task.before"}'
        i=$((i + 1))
    done
    grep -q task.before "$R/listen2.out" || fail "no event before the restart"
    kill -9 "$BUS_PID"
    wait "$BUS_PID" 2>/dev/null
    start_bus
    i=0
    while kill -0 "$L2" 2>/dev/null && [ $i -lt 40 ]; do
        bounded "$PROBE" publish --endpoint "$EP" --home "$R" --name w2 --topic task.after \
            --body-json '{"v":1,"type":"event","topic":"task.after"}'
        i=$((i + 1))
    done
    wait "$L2" || fail "the subscriber got nothing after the bus restarted: $(cat "$R/listen2.out")"
    grep -q task.after "$R/listen2.out" || fail "no event after the restart"
    ok "a subscriber gets events again after the bus restarts"

    # INTEREST: a worker that asks hears which topics somebody subscribed,
    # at once and on every change; one that does not ask hears nothing
    kill "$L2" 2>/dev/null
    "$PROBE" interest --endpoint "$EP" --home "$R" --name w3 --service echo --count 50 \
        --timeout 4000 >"$R/interest.out" 2>"$R/interest.err" &
    I1=$!
    "$PROBE" interest --endpoint "$EP" --home "$R" --name w4 --service echo --raw --count 1 \
        --timeout 4000 >"$R/nointerest.out" 2>"$R/nointerest.err" &
    I2=$!
    PIDS="$PIDS $I1 $I2"
    wait_log '"topics"' "$R/interest.out"
    "$PROBE" listen --endpoint "$EP" --home "$R" --name emadsctl --prefix step. --count 1 \
        --timeout 6000 >"$R/listen3.out" 2>&1 &
    PIDS="$PIDS $!"
    wait_log '"step\."' "$R/interest.out"
    "$PROBE" listen --endpoint "$EP" --home "$R" --name orchestrator --prefix "" --count 1 \
        --timeout 6000 >"$R/listen4.out" 2>&1 &
    PIDS="$PIDS $!"
    wait "$I1" # until its timeout: it prints every INTEREST it hears
    # the new subscription was announced, then the one to every topic
    awk '/"step\."/ {s = 1} s && /\[""\]/ {a = 1} END {exit !a}' "$R/interest.out" ||
        fail "INTEREST did not follow the subscriptions (step., then every topic): $(cat "$R/interest.out")"
    ok "a worker that asks hears the subscribed topics at once and on each change"
    wait "$I2" && fail "a worker that did not ask was sent INTEREST: $(cat "$R/nointerest.out")"
    grep -q '"topics"' "$R/nointerest.out" && fail "INTEREST to a worker that did not ask"
    ok "a worker that does not ask never hears INTEREST"
    ;;

daemon)
    "$BUS" --home "$R" || fail "emads-bus did not start as a daemon"
    [ -s "$R/pids/emads-bus.pid" ] || fail "no pid file"
    BUS_PID=$(cat "$R/pids/emads-bus.pid")
    PIDS="$PIDS $BUS_PID"
    call emadsctl bus '{"v":1,"type":"ping"}' | grep -q '"pong"' ||
        fail "the daemon does not answer on ipc://<run>/bus.sock"
    ok "emads-bus detaches once it serves, writes its pid file"
    "$BUS" --home "$R" 2>"$R/second.err" && fail "a second bus started in the same run directory"
    grep -q "already running" "$R/second.err" || fail "no reason given: $(cat "$R/second.err")"
    call emadsctl bus '{"v":1,"type":"ping"}' | grep -q '"pong"' || fail "the first bus stopped serving"
    ok "a second bus in the same run directory refuses to start"
    "$BUS" --home "$R" --endpoint "ipc://$R/x.sock" --bogus 2>/dev/null
    [ $? -eq 2 ] || fail "a usage error does not exit 2"
    kill -TERM "$BUS_PID"
    i=0
    while kill -0 "$BUS_PID" 2>/dev/null && [ $i -lt 50 ]; do
        i=$((i + 1))
        sleep 0.1
    done
    kill -0 "$BUS_PID" 2>/dev/null && fail "the daemon ignores SIGTERM"
    [ -e "$R/pids/emads-bus.pid" ] && fail "the pid file is left behind"
    grep -q "stopping" "$R/logs/emads-bus.log" || fail "no log in <run>/logs/emads-bus.log"
    ok "the daemon stops on SIGTERM, removes its pid file and logs to the run directory"
    exit 0
    ;;

many)
    # more workers of one service than the 64 a pong used to list: the
    # pong lists every one of them (emadsctl status prints its worker_list)
    start_bus
    for k in $(seq 1 70); do
        "$PROBE" echo-worker --endpoint "$EP" --home "$R" --name w1 --service echo \
            >/dev/null 2>>"$R/many.err" &
        PIDS="$PIDS $!"
    done
    wait_workers echo 70
    call emadsctl bus '{"v":1,"type":"ping"}' >"$R/pong.out" || fail "ping"
    n=$(python3 -c 'import json, sys
d = json.loads(open(sys.argv[1]).readline())
e = d["services"]["echo"]
print(len(e["worker_list"]), len(e["instances"]), len({w["pid"] for w in e["worker_list"]}))' "$R/pong.out")
    [ "$n" = "70 70 70" ] || fail "the pong lists (workers, instances, pids) $n of 70 workers"
    ok "the pong lists all 70 workers of a service"
    ;;

*)
    echo "unknown test $T"
    exit 2
    ;;
esac
stop_bus
exit 0
