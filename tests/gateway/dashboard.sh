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

# ---- the API, with curl ----
get() { # get PATH -> body in $E2E_TMP/body, prints the status
    curl -s -o "$E2E_TMP/body" -w '%{http_code}' "http://$GW$1"
}
[ "$(get /)" = 200 ] && grep -q '<script src="app.js"' "$E2E_TMP/body" || fail "GET / is not the page"
for f in app.js style.css index.html; do
    cmp -s <(curl -sf "http://$GW/$f") "$EMADS_SRC/gateway/www/$f" ||
        fail "GET /$f differs from gateway/www/$f"
done
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

# ---- the page in Chromium; the task runs after it loaded ----
mkdir -p "${DASH_SHOT_DIR:=$E2E_TMP}"
export GW CHROMIUM DASH_SHOT="$DASH_SHOT_DIR/dashboard.png" PROFILE="$E2E_TMP/chromium"
export SUBMIT="$EMADSCTL --home $E2E_RUN --config $E2E_CFG/emads.yaml --json submit --wait"
node "$here/dashboard.mjs" "Should we migrate billing to Kubernetes? Assess the risk." \
    >"$E2E_TMP/page.json" || fail "the page did not show the task live (see above)"
task=$(json 'd["task"]' <"$E2E_TMP/page.json")
echo "ok - the page showed task $task's steps and every agent's spend without a reload"
echo "screenshot: $DASH_SHOT"
