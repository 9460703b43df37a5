#!/bin/bash
# dashboard.sh - the live dashboard served by emads-gateway: the real
# constellation in front of the test LLM server; the API's answers
# (docs/API.md) checked against emadsctl's, then the page opened in headless
# Chromium (dashboard.mjs, over the DevTools protocol), a task run after the
# page loaded, and the page must show each agent's spend and the task's
# steps without a reload. The page polls nothing here (?poll=0): only the
# event stream can update it. A screenshot is kept in $DASH_SHOT_DIR.
. "$(dirname "$0")/../e2e/lib.sh"
here=$(cd "$(dirname "$0")" && pwd)
command -v node >/dev/null || fail "node is not installed"
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
[ -x "$CHROMIUM" ] || fail "chromium is not installed ($CHROMIUM)"

e2e_llm_server --usage 1000,1000
ctl up >/dev/null || fail "emadsctl up failed"
GW=$(cat "$E2E_RUN/gateway.addr")

# a stream that gets no event (another task's) hears a keep-alive comment
# after 15 s; read at the end
curl -sN --max-time 60 "http://$GW/api/events?task=t-quiet" >"$E2E_TMP/sse.quiet" 2>/dev/null &
sse_quiet=$!
E2E_EXTRA_PIDS="${E2E_EXTRA_PIDS:-} $sse_quiet"

# ---- the API, with curl ----
get() { # get PATH -> body in $E2E_TMP/body, prints the status
    curl -s -o "$E2E_TMP/body" -w '%{http_code}' "http://$GW$1"
}
[ "$(get /)" = 200 ] && grep -q '<script src="app.js"' "$E2E_TMP/body" || fail "GET / is not the page"
for f in app.js style.css index.html; do
    cmp -s <(curl -sf "http://$GW/$f") "$EMADS_SRC/gateway/www/$f" ||
        fail "GET /$f differs from gateway/www/$f"
done
[ "$(curl -s -I -o /dev/null -w '%{http_code}' "http://$GW/")" = 200 ] || fail "HEAD / is not 200"
ctype=$(curl -s -o /dev/null -w '%{content_type}' "http://$GW/app.js")
case $ctype in text/javascript*) ;; *) fail "app.js served as '$ctype'" ;; esac
[ "$(get /api/spend)" = 200 ] || fail "GET /api/spend: $(cat "$E2E_TMP/body")"
ctl --json spend >"$E2E_TMP/ctl_spend.json"
python3 -c 'import json,sys; a=json.load(open(sys.argv[1])); b=json.load(open(sys.argv[2])); sys.exit(a != b)' \
    "$E2E_TMP/body" "$E2E_TMP/ctl_spend.json" || fail "/api/spend differs from emadsctl --json spend"
[ "$(get /api/tasks)" = 200 ] || fail "GET /api/tasks: $(cat "$E2E_TMP/body")"
[ "$(json 'len(d["tasks"])' <"$E2E_TMP/body")" = 0 ] || fail "tasks before any was submitted"
[ "$(get /api/tasks/t-nosuchtask)" = 404 ] || fail "unknown task: not 404"
[ "$(json 'd["error"]["code"]' <"$E2E_TMP/body")" = unknown_task ] || fail "unknown task: $(cat "$E2E_TMP/body")"
[ "$(get '/api/tasks?limit=0')" = 400 ] || fail "limit=0: not 400"
[ "$(get '/api/tasks?limit=99999999999999999999')" = 400 ] || fail "absurd limit: not 400"
[ "$(get '/api/tasks?state=nonsense')" = 400 ] || fail "bad state: not 400"
[ "$(get '/api/spend?task=t-nosuchtask')" = 404 ] || fail "spend of an unknown task: not 404"
[ "$(get /api/nothing)" = 404 ] || fail "unknown API path: not 404"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://$GW/api/spend")
[ "$code" = 405 ] || fail "POST /api/spend answered $code, not 405"
# the event stream opens at once (headers and a comment)
curl -sN --max-time 2 -D "$E2E_TMP/sse.head" "http://$GW/api/events" >"$E2E_TMP/sse.body" || true
grep -qi '^content-type: text/event-stream' "$E2E_TMP/sse.head" || fail "/api/events is not an event stream"
grep -q '^: connected' "$E2E_TMP/sse.body" || fail "/api/events sent nothing at once"
echo "ok - the API answers as emadsctl does, errors in the documented shape"

# event streams filtered by topic and by task, read while the page's task runs
curl -sN --max-time 60 "http://$GW/api/events" >"$E2E_TMP/sse.all" 2>/dev/null &
sse_all=$!
curl -sN --max-time 60 "http://$GW/api/events?topic=alert.&topic=task.done" >"$E2E_TMP/sse.topic" 2>/dev/null &
sse_topic=$!
curl -sN --max-time 60 "http://$GW/api/events?task=t-other" >"$E2E_TMP/sse.task" 2>/dev/null &
sse_task=$!
E2E_EXTRA_PIDS="${E2E_EXTRA_PIDS:-} $sse_all $sse_topic $sse_task"
[ "$(get '/api/events?topic=')" = 400 ] || fail "an empty topic: not 400"

# ---- the page in Chromium; the task runs after it loaded ----
mkdir -p "${DASH_SHOT_DIR:=$E2E_TMP}"
export GW CHROMIUM DASH_SHOT="$DASH_SHOT_DIR/dashboard.png" PROFILE="$E2E_TMP/chromium"
export SUBMIT="$EMADSCTL --home $E2E_RUN --config $E2E_CFG/emads.yaml --json submit --wait"
node "$here/dashboard.mjs" "Should we migrate billing to Kubernetes? Assess the risk." \
    >"$E2E_TMP/page.json" || fail "the page did not show the task live (see above)"
task=$(json 'd["task"]' <"$E2E_TMP/page.json")
echo "ok - the page showed task $task's steps and every agent's spend without a reload"
echo "screenshot: $DASH_SHOT"

# the streams: every event of the task in the unfiltered one, only the
# asked topics in the filtered one, nothing of the task in another task's
for _ in $(seq 1 50); do grep -q '^event: task.done' "$E2E_TMP/sse.topic" && break; sleep 0.1; done
kill "$sse_all" "$sse_topic" "$sse_task" 2>/dev/null || true
for t in task.submitted step.started step.done spend.commit task.done; do
    grep -q "^event: $t\$" "$E2E_TMP/sse.all" || fail "no $t event in /api/events"
done
grep '^data: ' "$E2E_TMP/sse.all" | grep '"topic":"step.done"' | head -1 | sed 's/^data: //' >"$E2E_TMP/one.json"
[ "$(json 'd["task"] + " " + d["sender"] + " " + str("v" in d)' <"$E2E_TMP/one.json")" = "$task orchestrator False" ] ||
    fail "a step.done event is not the documented line: $(cat "$E2E_TMP/one.json")"
grep -q '^id: 1$' "$E2E_TMP/sse.all" || fail "event ids do not count from 1"
grep -q '^event: task.done$' "$E2E_TMP/sse.topic" || fail "topic=task.done: no task.done"
if grep -q '^event: step\.' "$E2E_TMP/sse.topic"; then fail "topic filter let step events through"; fi
if grep -q '^event: ' "$E2E_TMP/sse.task"; then fail "task=t-other got events of another task"; fi
echo "ok - /api/events relays the bus's events, filtered by topic and task"

for _ in $(seq 1 250); do grep -q '^: keep-alive' "$E2E_TMP/sse.quiet" && break; sleep 0.1; done
grep -q '^: keep-alive' "$E2E_TMP/sse.quiet" || fail "no keep-alive comment on a quiet stream"
kill "$sse_quiet" 2>/dev/null || true
echo "ok - a quiet stream gets a keep-alive comment"

# the bus goes away and comes back: the stream says so and keeps going
curl -sN --max-time 60 "http://$GW/api/events" >"$E2E_TMP/sse.bus" 2>/dev/null &
sse_bus=$!
E2E_EXTRA_PIDS="${E2E_EXTRA_PIDS:-} $sse_bus"
for _ in $(seq 1 50); do grep -q '^: connected' "$E2E_TMP/sse.bus" && break; sleep 0.1; done
bus_pid=$(cat "$E2E_RUN/pids/emads-bus.pid")
kill "$bus_pid"
for _ in $(seq 1 100); do grep -q '^event: gateway.bus_lost' "$E2E_TMP/sse.bus" && break; sleep 0.1; done
grep -q '^event: gateway.bus_lost' "$E2E_TMP/sse.bus" || fail "no gateway.bus_lost after the bus stopped"
ctl up >/dev/null 2>&1 || fail "emadsctl up did not restart the bus"
for _ in $(seq 1 150); do grep -q '^event: gateway.bus_back' "$E2E_TMP/sse.bus" && break; sleep 0.1; done
grep -q '^event: gateway.bus_back' "$E2E_TMP/sse.bus" || fail "no gateway.bus_back after the bus came back"
ctl --json submit --wait "Should we adopt a service mesh? Assess the risk." >/dev/null || fail "second task failed"
for _ in $(seq 1 50); do grep -q '^event: task.done' "$E2E_TMP/sse.bus" && break; sleep 0.1; done
grep -q '^event: task.done' "$E2E_TMP/sse.bus" || fail "no events relayed after the bus came back"
kill "$sse_bus" 2>/dev/null || true
echo "ok - the event stream reports the bus lost and back, and relays again"

# a client that is not on loopback is refused (when this host has another address)
other=$(hostname -I 2>/dev/null | tr ' ' '\n' | grep -E '^[0-9.]+$' | grep -v '^127\.' | head -1 || true)
if [ -n "$other" ]; then
    ctl down >/dev/null
    edit_cfg "$E2E_CFG/emads.yaml" 's/^\(  listen: \)"127\.0\.0\.1:[0-9]*"/\1"0.0.0.0:0"/'
    grep -q '^  listen: "0.0.0.0:0"' "$E2E_CFG/emads.yaml" || fail "could not set gateway.listen"
    ctl up >/dev/null || fail "up with gateway.listen 0.0.0.0 failed"
    port=$(cut -d: -f2 "$E2E_RUN/gateway.addr")
    code=$(curl -s -o "$E2E_TMP/remote.json" -w '%{http_code}' "http://$other:$port/api/spend")
    [ "$code" = 403 ] || fail "a client from $other got $code for /api/spend, not 403"
    [ "$(json 'd["error"]["code"]' <"$E2E_TMP/remote.json")" = forbidden ] || fail "403 body: $(cat "$E2E_TMP/remote.json")"
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://$other:$port/")
    [ "$code" = 403 ] || fail "a client from $other got $code for /, not 403"
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/api/spend")
    [ "$code" = 200 ] || fail "loopback got $code on a gateway listening on 0.0.0.0"
    echo "ok - a client from $other is refused the dashboard (403)"
else
    echo "skip - no non-loopback address on this host: the 403 rule is not exercised"
fi
