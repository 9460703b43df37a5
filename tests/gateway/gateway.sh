#!/bin/bash
# gateway.sh - emads-gateway end to end: the real constellation (emadsctl
# up, which starts the gateway) in front of the test LLM server, driven by
# the official SDKs in sdk_test.mjs, then the gateway with the ledger down.
#
# Needs node and npm; installs the SDKs with `npm ci` from the committed
# package-lock.json when node_modules is missing.
. "$(dirname "$0")/../e2e/lib.sh"
here=$(cd "$(dirname "$0")" && pwd)

command -v node >/dev/null || fail "node is not installed"
if [ ! -d "$here/node_modules" ]; then
    (cd "$here" && npm ci --no-audit --no-fund >/dev/null) || fail "npm ci failed in $here"
fi

e2e_llm_server
ctl up >/dev/null || fail "emadsctl up failed"
[ -s "$E2E_RUN/gateway.addr" ] || fail "the gateway wrote no gateway.addr"
GW_ADDR=$(cat "$E2E_RUN/gateway.addr")

# keys: a usage error (unknown principal) and the keys of the cases
set +e
ctl keys issue nobody --for no_such_agent >/dev/null 2>&1
[ $? -eq 2 ] || fail "keys issue --for an unknown principal should exit 2"
set -e
KEY_SDK=$(ctl keys issue sdk --for cto_agent)
KEY_SMALL=$(ctl keys issue small --for cto_agent --max-cost-usd 0.0005)
KEY_RACE=$(ctl keys issue race --for coo_agent --max-cost-usd 0.00065)
KEY_REVOKE=$(ctl keys issue revoke-me --for reconcile_gpt)
ctl --json keys list | json '[k["name"] for k in d["keys"]]' | grep -q '"revoke-me"' ||
    fail "keys list does not show the issued keys"
if grep -q "$KEY_SDK" "$E2E_RUN/gateway.keys"; then fail "a key is stored in clear"; fi
[ "$(stat -c %a "$E2E_RUN/gateway.keys")" = 600 ] || fail "gateway.keys is not mode 0600"

export GW_ADDR LLM_PORT=$E2E_LLM_PORT LLM_LOG="$E2E_TMP/llm.log" E2E_RUN
export E2E_CONF="$E2E_CFG/emads.yaml" KEY_SDK KEY_SMALL KEY_RACE KEY_REVOKE
node "$here/sdk_test.mjs" || fail "SDK cases failed"

# gw_refused WHAT STATUS CODE BODY [CURL ARGS...]: a chat completion with
# the sdk key and BODY gets STATUS and the error code CODE, and the provider
# gets no request
gw_refused() {
    local what=$1 status=$2 want=$3 body=$4 before code
    shift 4
    before=$(wc -l <"$E2E_TMP/llm.log")
    code=$(curl -s -o "$E2E_TMP/refused.json" -w '%{http_code}' \
        "http://$GW_ADDR/v1/chat/completions" -H "Authorization: Bearer $KEY_SDK" \
        -H 'Content-Type: application/json' "$@" -d "$body")
    [ "$code" = "$status" ] || fail "$what: status $code, want $status"
    [ "$(json 'd["error"]["code"]' <"$E2E_TMP/refused.json")" = "$want" ] ||
        fail "$what: $(cat "$E2E_TMP/refused.json")"
    [ "$(wc -l <"$E2E_TMP/llm.log")" = "$before" ] || fail "$what: the provider got a request"
}

# a body with a key twice is refused, nothing forwarded: the provider could
# read another max_tokens than the one the hold was made for
gw_refused "a duplicate max_tokens" 400 invalid_request \
    '{"model":"gpt-4o-mini","max_tokens":16,"max_tokens":4000,"messages":[{"role":"user","content":"hi"}]}'
echo "ok - a body with a key twice is refused (400) and not forwarded"

# a stop drains: a call in flight at SIGTERM is answered and committed
curl -s -X POST "http://127.0.0.1:$E2E_LLM_PORT/control" -d '{"scenario": "slow:2000"}' >/dev/null
curl -s -o "$E2E_TMP/drain.json" -w '%{http_code}' "http://$GW_ADDR/v1/chat/completions" \
    -H "Authorization: Bearer $KEY_SDK" -H 'Content-Type: application/json' -H 'x-emads-task: gw-drain' \
    -d '{"model":"gpt-4o-mini","max_tokens":50,"messages":[{"role":"user","content":"hi"}]}' \
    >"$E2E_TMP/drain.code" &
drain_pid=$!
for _ in $(seq 1 50); do # until the call holds budget
    [ "$(ctl --json spend --task gw-drain 2>/dev/null | json 'd["total"]["held"]["tokens"] > 0' \
        2>/dev/null)" = true ] && break
    sleep 0.1
done
kill -TERM "$(cat "$E2E_RUN/pids/emads-gateway.pid")"
wait "$drain_pid" || true
curl -s -X POST "http://127.0.0.1:$E2E_LLM_PORT/control" -d '{"scenario": "usage"}' >/dev/null
[ "$(cat "$E2E_TMP/drain.code")" = 200 ] || fail "a call in flight at SIGTERM got $(cat "$E2E_TMP/drain.code")"
for _ in $(seq 1 50); do
    [ "$(ctl --json spend --task gw-drain | json 'd["total"]["held"]["tokens"]')" = 0 ] && break
    sleep 0.1
done
[ "$(ctl --json spend --task gw-drain | json 'd["total"]["held"]["tokens"]')" = 0 ] ||
    fail "the drained call's hold is still open"
[ "$(ctl --json spend --task gw-drain | json 'd["total"]["used"]["tokens"] > 0')" = true ] ||
    fail "the drained call was not charged"
grep -q "stopping: waiting for 1 calls in flight" "$E2E_RUN/logs/emads-gateway.log" ||
    fail "the gateway did not say it drained"
echo "ok - SIGTERM drains: the call in flight is answered and committed"
ctl up >/dev/null || fail "emadsctl up did not restart the gateway"
GW_ADDR=$(cat "$E2E_RUN/gateway.addr")

# the ledger down: 503 in the provider's format, and nothing forwarded
kill "$(cat "$E2E_RUN/pids/emads-ledger.pid")"
for _ in $(seq 1 50); do
    kill -0 "$(cat "$E2E_RUN/pids/emads-ledger.pid")" 2>/dev/null || break
    sleep 0.1
done
gw_refused "ledger down" 503 ledger_unavailable \
    '{"model":"gpt-4o-mini","max_tokens":50,"messages":[{"role":"user","content":"hi"}]}' \
    -H 'x-emads-task: gw-down'
echo "ok - ledger down: 503 ledger_unavailable, nothing forwarded"
