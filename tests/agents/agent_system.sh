#!/bin/sh
# agent_system.sh - system tests of an agent process (cto_agent) with the real
# emads-bus, emads-ledger and the OpenAI-compatible test server, on ipc://
# endpoints in a temporary run directory, with CURVE on. Steps are sent as
# `orchestrator` by step_driver; assertions read the step_result, the
# ledger's spend and the test server's request log.
#
#   agent_system.sh TEST BUILD_ROOT SOURCE_DIR
#
# TEST: usage nousage retry429 slow max_tokens adaptive ledger_down tool
#       denied concurrency errors roles hugeusage stepschema limit_param
#       truncated refusal cached stream keyless anthropic. Every process the
#       test starts is killed on exit, pass or fail.
set -u
T=$1
B=$2
SRC=$3
BUS=$B/bus/emads-bus
LEDGER=$B/budgets/emads-ledger
AGENT=$B/agents/emads-agent
LLM=$B/tests/llm_server/emads-test-llm
DRIVER=$B/tests/agents/step_driver
for p in "$BUS" "$LEDGER" "$AGENT" "$LLM" "$DRIVER"; do
    [ -x "$p" ] || { echo "SKIP: $p is not built"; exit 77; }
done
command -v jq >/dev/null || { echo "SKIP: jq is not installed"; exit 77; }

R=$(mktemp -d /tmp/emads-agent-test.XXXXXX)
EP="ipc://$R/bus.sock"
PIDS=""
LEDGER_PID=""

cleanup() {
    for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$R"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
    echo "FAIL [$T]: $*"
    for f in "$R"/*.log; do
        [ -f "$f" ] && { echo "--- $f"; tail -30 "$f"; }
    done
    exit 1
}
ok() { echo "ok [$T]: $*"; }

# call NAME SERVICE JSON: prints the reply
call() {
    "$DRIVER" call --endpoint "$EP" --home "$R" --name "$1" --service "$2" --json "$3" \
        --timeout 15000
}
control() {
    curl -s -X POST "http://127.0.0.1:$PORT/control" -d "$1" >/dev/null ||
        fail "cannot reach the test server"
}
requests() { [ -f "$R/llm-requests.log" ] && wc -l <"$R/llm-requests.log" || echo 0; }

# step NAME PATH EXTRA_OPTION_JSON TOKENS LATENCY TEXT: prints the step_result
N=0
step() {
    N=$((N + 1))
    body=$(jq -cn --arg task t1 --arg step "$1" --arg path "$2" --argjson extra "$3" \
        --argjson tokens "$4" --argjson lat "$5" --arg text "$6" --arg rid "s$N" \
        --argjson top "${7:-{\}}" \
        '{type: "step", request_id: $rid, task: $task, step: $step, text: $text,
          option: ({path: $path, est: {tokens: $tokens, latency_ms: $lat, tool_calls: 0,
                                       cost_uusd: 0}, quality: 0.9} + $extra)} + $top')
    call orchestrator cto_agent "$body"
}
# step_to AGENT NAME TEXT [INPUTS_JSON]: a local step to any agent
step_to() {
    N=$((N + 1))
    inputs=${4:-}
    [ -n "$inputs" ] || inputs='{}'
    body=$(jq -cn --arg step "$2" --arg text "$3" --argjson inputs "$inputs" \
        --arg rid "s$N" '{type: "step", request_id: $rid, task: "t1", step: $step, text: $text,
          option: {path: "local", est: {tokens: 0, latency_ms: 50, tool_calls: 0,
                                        cost_uusd: 0}, quality: 0.6}, inputs: $inputs}')
    call orchestrator "$1" "$body"
}
# want EXPR VALUE WHAT: the step_result in $r has jq EXPR = VALUE
want() {
    [ "$(printf "%s\n" "$r" | jq -r "$1")" = "$2" ] || fail "$3: $r"
}
# used DIM: the agent account's used amount in task t1
used() {
    call orchestrator ledger '{"type":"spend","task":"t1","agent":"cto_agent"}' |
        jq -r ".accounts[] | select(.kind == \"agent\") | .used.$1"
}
held() {
    call orchestrator ledger '{"type":"spend","task":"t1","agent":"cto_agent"}' |
        jq -r ".accounts[] | select(.kind == \"agent\") | .held.$1"
}
# burn COST: spend COST micro-USD of cto_agent's budget in t1 (as cto_agent)
BURN=0
burn() {
    BURN=$((BURN + 1))
    r=$(call cto_agent ledger "{\"type\":\"reserve\",\"request_id\":\"burn$BURN\",\"task\":\"t1\",
        \"step\":\"burn\",\"amounts\":{\"tokens\":0,\"latency_ms\":0,\"tool_calls\":0,
        \"cost_uusd\":$1}}")
    h=$(printf "%s\n" "$r" | jq -r .hold_id)
    [ -n "$h" ] && [ "$h" != null ] || fail "burn reserve: $r"
    r=$(call cto_agent ledger "{\"type\":\"commit\",\"request_id\":\"burnc$BURN\",
        \"hold_id\":\"$h\",\"actual\":{\"tokens\":0,\"latency_ms\":0,\"tool_calls\":0,
        \"cost_uusd\":$1},\"measured\":\"provider\"}")
    printf "%s\n" "$r" | grep -q commit_ok || fail "burn commit: $r"
}

# ---- the constellation ------------------------------------------------------
export EMADS_TEST_LLM_KEY=test-key
unset EMADS_TEST_NO_KEY
"$LLM" --port 0 --port-file "$R/llm.port" --log "$R/llm-requests.log" \
    --require-key test-key --completion-models o3,o3-mini \
    --models big,small,o3,o3-mini,big-stream,claude,claude-stream,free 2>"$R/llm-server.log" &
PIDS="$PIDS $!"
i=0
while [ ! -s "$R/llm.port" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
PORT=$(cat "$R/llm.port") || fail "the test server did not start"

mkdir -p "$R/kb"
cp "$SRC"/kb/*.md "$R/kb/"
cat >"$R/emads.yaml" <<YAML
budgets_file: agents_budget.yaml
knowledge_dir: kb
bus:
  endpoint: "$EP"
  curve: true
  request_timeout_ms: 3000
ledger:
  hold_ttl_ms: 60000
  metrics_port: 0
adaptive:
  local_below: 0.2
  small_model_below: 0.5
providers:
  test:
    base_url: "http://127.0.0.1:$PORT/v1"
    api_key_env: EMADS_TEST_LLM_KEY
    max_retries: 3
    max_response_bytes: 600000
  nokey:
    base_url: "http://127.0.0.1:$PORT/v1"
    api_key_env: EMADS_TEST_NO_KEY
  open:
    base_url: "http://127.0.0.1:$PORT/v1"
  anth:
    kind: anthropic
    base_url: "http://127.0.0.1:$PORT/v1"
    api_key_env: EMADS_TEST_LLM_KEY
    max_retries: 0
models:
  big-stream: {provider: test, input_usd_per_mtok: 1.00, output_usd_per_mtok: 2.00, streaming: true}
  o3:      {provider: test, input_usd_per_mtok: 1.00, output_usd_per_mtok: 2.00, output_limit_param: max_completion_tokens}
  o3-mini: {provider: test, input_usd_per_mtok: 1.00, output_usd_per_mtok: 2.00}
  free:    {provider: open, input_usd_per_mtok: 1.00, output_usd_per_mtok: 2.00}
  claude:  {provider: anth, input_usd_per_mtok: 3.00, cached_input_usd_per_mtok: 0.30, output_usd_per_mtok: 15.00}
  claude-stream: {provider: anth, input_usd_per_mtok: 3.00, cached_input_usd_per_mtok: 0.30, output_usd_per_mtok: 15.00, streaming: true}
  big:   {provider: test, input_usd_per_mtok: 1.00, cached_input_usd_per_mtok: 0.25, output_usd_per_mtok: 2.00, context_tokens: 8192}
  small: {provider: test, input_usd_per_mtok: 0.10, output_usd_per_mtok: 0.20, context_tokens: 8192}
  ghost: {provider: test, input_usd_per_mtok: 1.00, output_usd_per_mtok: 2.00, context_tokens: 8192}
  keyless: {provider: nokey, input_usd_per_mtok: 1.00, output_usd_per_mtok: 2.00, context_tokens: 8192}
tools:
  kb_search:
    command: [emads-kb-search, --dir, "{knowledge_dir}"]
    timeout_ms: 2000
    output_cap_bytes: 65536
  hang:
    command: [/bin/sh, -c, "sleep 30"]
    timeout_ms: 600
    output_cap_bytes: 1024
  health:
    url: "http://127.0.0.1:$PORT/health?q={input}"
    method: GET
    timeout_ms: 2000
agents:
  cto_agent:
    role: cto
    concurrency: 2
    model: big
    small_model: small
  coo_agent:
    role: coo
    concurrency: 1
    model: big
  reconcile_gpt:
    role: reconcile
    concurrency: 1
    model: big
    small_model: small
workflows:
  wf:
    steps:
      - name: cto_analysis
        agent: cto_agent
        options:
          - {path: llm, model: big, tokens: 3000, latency_ms: 3000, quality: 0.9}
access:
  - {service: ledger, command: "*", names: [cto_agent, coo_agent, reconcile_gpt, orchestrator]}
  - {service: cto_agent, command: step, names: [orchestrator]}
  - {service: coo_agent, command: step, names: [orchestrator]}
  - {service: reconcile_gpt, command: step, names: [orchestrator]}
  - {service: cto_agent, command: providers, names: [orchestrator]}
YAML
cat >"$R/agents_budget.yaml" <<YAML
budgets:
  orchestrator: {max_tokens: 50000, max_cost_usd: 5.00}
  cto_agent:    {max_tokens: 100000, max_latency_ms: 120000, max_tool_calls: 10, max_cost_usd: 2.00}
  coo_agent:    {max_tokens: 100000, max_latency_ms: 120000, max_tool_calls: 10, max_cost_usd: 2.00}
  reconcile_gpt: {max_tokens: 100000, max_latency_ms: 120000, max_tool_calls: 10, max_cost_usd: 2.00}
  total_task_budget: {max_tokens: 200000, max_cost_usd: 20.00}
YAML
CFG="$R/emads.yaml"

"$DRIVER" certs "$R" orchestrator cto_agent coo_agent reconcile_gpt emadsctl ledger >/dev/null ||
    fail "cannot create certificates"
"$BUS" --home "$R" --config "$CFG" --endpoint "$EP" --foreground 2>"$R/bus.log" &
PIDS="$PIDS $!"
"$LEDGER" --home "$R" --config "$CFG" --endpoint "$EP" --metrics-port 0 2>"$R/ledger.log" &
LEDGER_PID=$!
PIDS="$PIDS $LEDGER_PID"
(cd "$R" && exec "$AGENT" --name cto_agent --home "$R" --config "$CFG" --endpoint "$EP") 2>"$R/agent.log" &
AGENT_PID=$!
PIDS="$PIDS $AGENT_PID"
WANT='.services.ledger.workers >= 1 and .services.cto_agent.workers >= 1'
if [ "$T" = roles ]; then
    for a in coo_agent reconcile_gpt; do
        (cd "$R" && exec "$AGENT" --name "$a" --home "$R" --config "$CFG" --endpoint "$EP") \
            2>"$R/$a.log" &
        PIDS="$PIDS $!"
        WANT="$WANT and .services.$a.workers >= 1"
    done
fi

i=0
while :; do
    pong=$(call emadsctl bus '{"type":"ping"}' 2>/dev/null)
    if printf "%s\n" "$pong" | jq -e "$WANT" >/dev/null 2>&1; then
        break
    fi
    i=$((i + 1))
    [ $i -lt 100 ] || fail "bus, ledger and agent did not come up: $pong"
    sleep 0.1
done
r=$(call orchestrator ledger '{"type":"open_task","request_id":"open-t1","task":"t1"}')
printf "%s\n" "$r" | grep -q open_task_ok || fail "open_task: $r"

TEXT="Add card payments with refunds to the web shop within 6 weeks, PCI compliant."

# ---- the tests ---------------------------------------------------------------
case $T in
usage)
    # the provider reports 123 prompt + 45 completion tokens; big costs
    # 1 uUSD per input token and 2 uUSD per output token
    control '{"scenario":"usage","usage":[123,45]}'
    r=$(step cto_analysis llm '{"model":"big"}' 3000 3000 "$TEXT")
    [ "$(printf "%s\n" "$r" | jq -r .status)" = ok ] || fail "status: $r"
    [ "$(printf "%s\n" "$r" | jq -r .measured)" = provider ] || fail "measured: $r"
    [ "$(printf "%s\n" "$r" | jq -r .path)" = llm ] || fail "path: $r"
    [ "$(printf "%s\n" "$r" | jq -r .model)" = big ] || fail "model: $r"
    [ "$(printf "%s\n" "$r" | jq -r .actual.tokens)" = 168 ] || fail "actual tokens: $r"
    [ "$(printf "%s\n" "$r" | jq -r .actual.cost_uusd)" = 213 ] || fail "actual cost: $r"
    [ "$(printf "%s\n" "$r" | jq -r .output.decision)" = proceed_with_conditions ] || fail "output: $r"
    [ "$(used tokens)" = 168 ] || fail "ledger tokens used $(used tokens), want 168"
    [ "$(used cost_uusd)" = 213 ] || fail "ledger cost used $(used cost_uusd), want 213"
    [ "$(held cost_uusd)" = 0 ] || fail "the hold was not resolved"
    [ "$(requests)" = 1 ] || fail "want 1 request, got $(requests)"
    jq -e 'select(.model == "big" and .auth == true and .status == 200)' \
        "$R/llm-requests.log" >/dev/null || fail "request: $(cat "$R/llm-requests.log")"
    # the agent stops cleanly on SIGTERM (and, under sanitizers, without leaks)
    [ "$(cat "$R/pids/cto_agent.pid" 2>/dev/null)" = "$AGENT_PID" ] || fail "no pid file"
    kill -TERM "$AGENT_PID"
    wait "$AGENT_PID"
    rc=$?
    [ $rc = 0 ] || fail "the agent exited with $rc on SIGTERM"
    ! grep -q "Sanitizer" "$R/agent.log" || fail "sanitizer report in the agent's log"
    [ ! -e "$R/pids/cto_agent.pid" ] || fail "pid file left behind"
    # the token calibration learnt from the provider's usage is kept
    jq -e '.big.reported > 0' "$R/cto_agent.calib.json" >/dev/null ||
        fail "calibration not saved: $(cat "$R/cto_agent.calib.json" 2>&1)"
    ok "usage committed exactly: 168 tokens, 213 uUSD"
    ;;
calib)
    # answers of 300 tokens: after TOKENS_OUT_MIN_SAMPLES (8) of them a
    # step's call asks for 375 tokens (300 + 25 %) instead of what the
    # 3000-token estimate leaves after the prompt, and holds accordingly
    control '{"scenario":"usage","usage":[100,300]}'
    for i in $(seq 1 10); do
        r=$(step cto_analysis llm '{"model":"big"}' 3000 3000 "$TEXT")
        [ "$(printf "%s\n" "$r" | jq -r .status)" = ok ] || fail "step $i: $r"
    done
    jq -s -e '([.[0:8][] | .max_tokens > 2000] | all) and ([.[8:10][] | .max_tokens == 375] | all)' \
        "$R/llm-requests.log" >/dev/null ||
        fail "max_tokens: $(jq -s -c '[.[].max_tokens]' "$R/llm-requests.log")"
    # (the hold is prompt + max_tokens: the call asks for what it holds)
    [ "$(held cost_uusd)" = 0 ] || fail "a hold was not resolved"
    # another step has no history yet: its limit is the estimate's
    r=$(step reconcile llm '{"model":"big"}' 3000 3000 "$TEXT")
    jq -s -e '.[10].max_tokens > 2000' "$R/llm-requests.log" >/dev/null ||
        fail "a step without history got a calibrated limit: $(jq -s -c '[.[].max_tokens]' "$R/llm-requests.log")"
    kill -TERM "$AGENT_PID"
    wait "$AGENT_PID" || fail "the agent exited with $? on SIGTERM"
    jq -e '."@outputs"."big/cto_analysis" | length == 10' "$R/cto_agent.calib.json" >/dev/null ||
        fail "output history not saved: $(cat "$R/cto_agent.calib.json" 2>&1)"
    ok "max_tokens from calibrated history: $(jq -s -c '[.[].max_tokens]' "$R/llm-requests.log")"
    ;;
nousage)
    control '{"scenario":"nousage"}'
    r=$(step cto_analysis llm '{"model":"big"}' 3000 3000 "$TEXT")
    [ "$(printf "%s\n" "$r" | jq -r .status)" = ok ] || fail "status: $r"
    [ "$(printf "%s\n" "$r" | jq -r .measured)" = estimated ] || fail "measured: $r"
    t=$(printf "%s\n" "$r" | jq -r .actual.tokens)
    [ "$t" -gt 0 ] || fail "estimated tokens $t"
    [ "$(printf "%s\n" "$r" | jq -r '.actual.cost_uusd > 0')" = true ] || fail "cost: $r"
    [ "$(used tokens)" = "$t" ] || fail "ledger tokens $(used tokens), want $t"
    ok "no usage: $t tokens estimated and marked estimated"
    ;;
retry429)
    control '{"scenario":"429x2","usage":[100,20]}'
    r=$(step cto_analysis llm '{"model":"big"}' 3000 5000 "$TEXT")
    [ "$(printf "%s\n" "$r" | jq -r .status)" = ok ] || fail "status: $r"
    [ "$(requests)" = 3 ] || fail "want 3 requests (429, 429, 200), got $(requests)"
    [ "$(jq -s '[.[].status] == [429, 429, 200]' "$R/llm-requests.log")" = true ] ||
        fail "statuses: $(cat "$R/llm-requests.log")"
    [ "$(used tokens)" = 120 ] || fail "one step's spend: $(used tokens)"
    lat=$(printf "%s\n" "$r" | jq -r .actual.latency_ms)
    [ "$lat" -le 5000 ] || fail "retries outlived the hold: $lat ms"
    ok "two 429s retried inside the hold, one step, one commit"
    # a 5xx is retried the same way
    control '{"scenario":"500x1","usage":[100,20]}'
    r=$(step cto_analysis_500 llm '{"model":"big"}' 3000 5000 "$TEXT")
    [ "$(printf "%s\n" "$r" | jq -r .status)" = ok ] || fail "500 then 200: $r"
    [ "$(jq -s '[.[].status] == [429, 429, 200, 500, 200]' "$R/llm-requests.log")" = true ] ||
        fail "statuses: $(cat "$R/llm-requests.log")"
    [ "$(used tokens)" = 240 ] || fail "two steps' spend: $(used tokens)"
    ok "a 500 retried inside the hold"
    ;;
slow)
    control '{"scenario":"slow:5000"}'
    r=$(step cto_analysis llm '{"model":"big"}' 3000 800 "$TEXT")
    [ "$(printf "%s\n" "$r" | jq -r .status)" = error ] || fail "status: $r"
    [ "$(printf "%s\n" "$r" | jq -r .error.code)" = timeout ] || fail "code: $r"
    [ "$(printf "%s\n" "$r" | jq -r .measured)" = whole_hold ] || fail "measured: $r"
    [ "$(printf "%s\n" "$r" | jq -r .actual.tokens)" = 3000 ] || fail "tokens: $r"
    [ "$(printf "%s\n" "$r" | jq -r .actual.latency_ms)" = 800 ] || fail "latency: $r"
    [ "$(used tokens)" = 3000 ] || fail "ledger tokens $(used tokens), want the hold's 3000"
    [ "$(used latency_ms)" = 800 ] || fail "ledger latency $(used latency_ms)"
    c=$(printf "%s\n" "$r" | jq -r .actual.cost_uusd)
    [ "$c" -gt 0 ] && [ "$(used cost_uusd)" = "$c" ] || fail "cost $c vs $(used cost_uusd)"
    ok "slow provider cut at the hold's 800 ms, whole hold charged"
    ;;
max_tokens)
    control '{"scenario":"usage","usage":null}'
    for h in 300 1000 5000 20000; do
        r=$(step "s$h" llm '{"model":"big"}' $h 3000 "$TEXT")
        [ "$(printf "%s\n" "$r" | jq -r .status)" = ok ] || fail "hold $h: $r"
    done
    [ "$(requests)" = 4 ] || fail "want 4 requests, got $(requests)"
    # each request's max_tokens plus the prompt (as the server counts it)
    # fits in its hold, and the context window caps the largest
    jq -s -e '[.[0].max_tokens + .[0].prompt_tokens <= 300,
              .[1].max_tokens + .[1].prompt_tokens <= 1000,
              .[2].max_tokens + .[2].prompt_tokens <= 5000,
              .[3].max_tokens + .[3].prompt_tokens <= 8192,
              (.[] | .max_tokens > 0)] | all' "$R/llm-requests.log" >/dev/null ||
        fail "max_tokens: $(cat "$R/llm-requests.log")"
    # a hold too small for the prompt makes no request at all
    r=$(step tiny llm '{"model":"big"}' 40 3000 "$TEXT")
    [ "$(printf "%s\n" "$r" | jq -r .path)" = local ] || fail "tiny hold: $r"
    [ "$(requests)" = 4 ] || fail "a request was made for a 40-token hold"
    ok "max_tokens within every hold: $(jq -s -c '[.[].max_tokens]' "$R/llm-requests.log")"
    ;;
adaptive)
    control '{"scenario":"usage","usage":[100,20]}'
    burn 1200000 # 0.8 of 2.00 USD left -> 0.4
    r=$(step s1 llm '{"model":"big"}' 3000 3000 "$TEXT")
    [ "$(printf "%s\n" "$r" | jq -r .status)" = ok ] || fail "status: $r"
    [ "$(printf "%s\n" "$r" | jq -r .model)" = small ] || fail "model: $r"
    printf "%s\n" "$r" | jq -r .why | grep -q "small model" || fail "why: $r"
    [ "$(jq -r .model "$R/llm-requests.log")" = small ] || fail "sent: $(cat "$R/llm-requests.log")"
    burn 500000 # about 0.3 USD left -> 0.15
    r=$(step s2 llm '{"model":"big"}' 3000 3000 "$TEXT")
    [ "$(printf "%s\n" "$r" | jq -r .status)" = ok ] || fail "status: $r"
    [ "$(printf "%s\n" "$r" | jq -r .path)" = local ] || fail "path: $r"
    printf "%s\n" "$r" | jq -r .why | grep -q "^budget forced local path: cto_agent remaining cost ratio 0.1[0-9] < 0.20$" ||
        fail "why: $r"
    [ "$(printf "%s\n" "$r" | jq -r '.output.risks | length > 0')" = true ] || fail "output: $r"
    [ "$(requests)" = 1 ] || fail "the local step made a request"
    # a local step that ran is charged its real time, rounded up to whole ms
    [ "$(printf "%s\n" "$r" | jq -r '.actual.latency_ms >= 1')" = true ] ||
        fail "local latency: $r"
    ok "ratio 0.4 -> small model; ratio 0.15 -> local path, no request"
    # the ratio the orchestrator sends with a step (from its own ledger
    # read) is the one used: 0.30 here, while the ledger would say 0.15
    r=$(step s3 llm '{"model":"big"}' 3000 3000 "$TEXT" '{"cost_ratio":0.3}')
    [ "$(printf "%s\n" "$r" | jq -r .model)" = small ] || fail "given ratio ignored: $r"
    printf "%s\n" "$r" | jq -r .why | grep -q "0.30" || fail "why: $r"
    r=$(step s4 llm '{"model":"big"}' 3000 3000 "$TEXT" '{"cost_ratio":1.5}')
    [ "$(printf "%s\n" "$r" | jq -r .code)" = invalid ] || fail "absurd ratio accepted: $r"
    [ "$(requests)" = 2 ] || fail "the refused step made a request"
    ok "a ratio sent with the step is used; one outside 0..1 is refused"
    # on_exhaust fail: no fall-back for the budget, the step is denied
    r=$(step s4f llm '{"model":"big"}' 3000 3000 "$TEXT" '{"cost_ratio":0.1,"on_exhaust":"fail"}')
    [ "$(printf "%s\n" "$r" | jq -r .status)" = denied ] || fail "on_exhaust fail ran: $r"
    [ "$(printf "%s\n" "$r" | jq -r .error.code)" = budget_exhausted ] || fail "code: $r"
    printf "%s\n" "$r" | jq -r .error.reason |
        grep -q "^budget forced local path: cto_agent remaining cost ratio 0.10 < 0.20 (on_exhaust fail)$" ||
        fail "reason: $r"
    [ "$(requests)" = 2 ] || fail "the refused step made a request"
    ok "on_exhaust fail: denied budget_exhausted instead of the local path"
    # a model whose provider's API key is not set runs locally
    r=$(step s5 llm '{"model":"keyless"}' 3000 3000 "$TEXT" '{"cost_ratio":0.9}')
    [ "$(printf "%s\n" "$r" | jq -r .path)" = local ] || fail "no key: $r"
    printf "%s\n" "$r" | jq -r .why | grep -q 'no API key in \$EMADS_TEST_NO_KEY' || fail "why: $r"
    [ "$(requests)" = 2 ] || fail "a step without a key made a request"
    ok "no API key: local path, no request"
    ;;
ledger_down)
    control '{"scenario":"usage"}'
    kill "$LEDGER_PID"
    wait "$LEDGER_PID" 2>/dev/null
    r=$(step cto_analysis llm '{"model":"big"}' 3000 3000 "$TEXT")
    [ "$(printf "%s\n" "$r" | jq -r .status)" = error ] || fail "status: $r"
    [ "$(printf "%s\n" "$r" | jq -r .error.code)" = ledger_unavailable ] || fail "code: $r"
    [ "$(printf "%s\n" "$r" | jq -r .actual.tokens)" = 0 ] || fail "actual: $r"
    [ "$(printf "%s\n" "$r" | jq -r .model)" = null ] || fail "a step not run names a model: $r"
    [ "$(requests)" = 0 ] || fail "a request was made without a hold"
    ok "ledger stopped: step refused, no HTTP request"
    ;;
tool)
    r=$(step research tool '{"tool":"kb_search"}' 0 3000 \
        "How do we take card payments and handle refunds?")
    [ "$(printf "%s\n" "$r" | jq -r .status)" = ok ] || fail "status: $r"
    [ "$(printf "%s\n" "$r" | jq -r .path)" = tool ] || fail "path: $r"
    printf "%s\n" "$r" | jq -r .output.tool_output | grep -q "^## payments.md" || fail "output: $r"
    [ "$(printf "%s\n" "$r" | jq -r .actual.tool_calls)" = 1 ] || fail "actual: $r"
    [ "$(used tool_calls)" = 1 ] || fail "ledger tool calls $(used tool_calls)"
    r=$(step hang tool '{"tool":"hang"}' 0 5000 "anything")
    [ "$(printf "%s\n" "$r" | jq -r .status)" = error ] || fail "hang status: $r"
    [ "$(printf "%s\n" "$r" | jq -r .error.code)" = timeout ] || fail "hang code: $r"
    printf "%s\n" "$r" | jq -r .error.reason | grep -q "killed" || fail "hang reason: $r"
    # charged the time it ran (its 600 ms timeout, not the 5000 ms hold) and one call
    [ "$(printf "%s\n" "$r" | jq -r .measured)" = provider ] || fail "hang measured: $r"
    [ "$(printf "%s\n" "$r" | jq -r '.actual.latency_ms >= 600 and .actual.latency_ms < 5000')" = true ] ||
        fail "hang latency: $r"
    [ "$(printf "%s\n" "$r" | jq -r .actual.tool_calls)" = 1 ] || fail "hang calls: $r"
    [ "$(used tool_calls)" = 2 ] || fail "ledger tool calls $(used tool_calls)"
    # a tool followed by an LLM summary: one tool call and the model's tokens
    control '{"scenario":"usage","usage":[300,40]}'
    r=$(step research2 tool '{"tool":"kb_search","model":"big"}' 1500 3000 \
        "How do we take card payments and handle refunds?")
    [ "$(printf "%s\n" "$r" | jq -r .status)" = ok ] || fail "tool+summary: $r"
    [ "$(printf "%s\n" "$r" | jq -r .model)" = big ] || fail "summary model: $r"
    printf "%s\n" "$r" | jq -r .output.tool_output | grep -q "^## payments.md" ||
        fail "tool+summary output: $r"
    [ "$(printf "%s\n" "$r" | jq -r .output.summary)" != null ] || fail "no summary: $r"
    [ "$(printf "%s\n" "$r" | jq -r .actual.tokens)" = 340 ] || fail "summary tokens: $r"
    [ "$(printf "%s\n" "$r" | jq -r .actual.tool_calls)" = 1 ] || fail "tool calls: $r"
    [ "$(requests)" = 1 ] || fail "want one summary request, got $(requests)"
    jq -e 'select(.max_tokens + .prompt_tokens <= 1500)' "$R/llm-requests.log" >/dev/null ||
        fail "summary max_tokens: $(cat "$R/llm-requests.log")"
    [ "$(used tool_calls)" = 3 ] || fail "ledger tool calls $(used tool_calls)"
    r=$(step probe tool '{"tool":"health"}' 0 3000 "status please")
    [ "$(printf "%s\n" "$r" | jq -r .status)" = ok ] || fail "http tool: $r"
    [ "$(printf "%s\n" "$r" | jq -r .output.tool_output)" = ok ] || fail "http output: $r"
    [ "$(used tool_calls)" = 4 ] || fail "ledger tool calls $(used tool_calls)"
    [ "$(requests)" = 1 ] || fail "tool steps made other LLM requests"
    ok "tool steps: one tool call each, output returned (and summarised); hanging tool killed"
    ;;
roles)
    # the three processes, local path: the reconcile step merges the others
    cto=$(step_to cto_agent cto_analysis "$TEXT")
    coo=$(step_to coo_agent coo_analysis "$TEXT")
    [ "$(printf "%s\n" "$cto" | jq -r .output.role)" = cto ] || fail "cto: $cto"
    [ "$(printf "%s\n" "$coo" | jq -r .output.role)" = coo ] || fail "coo: $coo"
    [ "$(printf "%s\n" "$coo" | jq -r .output.requested_weeks)" = 6 ] || fail "coo: $coo"
    for x in "$cto" "$coo"; do
        [ "$(printf "%s\n" "$x" | jq -r '.path == "local" and .actual.latency_ms >= 1')" = true ] ||
            fail "local steps are charged at least 1 ms: $x"
    done
    inputs=$(jq -cn --argjson a "$(printf "%s\n" "$cto" | jq -c .output)" \
        --argjson b "$(printf "%s\n" "$coo" | jq -c .output)" \
        '{cto_analysis: $a, coo_analysis: $b}')
    r=$(step_to reconcile_gpt reconcile "$TEXT" "$inputs")
    [ "$(printf "%s\n" "$r" | jq -r .status)" = ok ] || fail "reconcile: $r"
    [ "$(printf "%s\n" "$r" | jq -r '.output.recommendation | length > 20')" = true ] ||
        fail "recommendation: $r"
    [ "$(printf "%s\n" "$r" | jq -r .output.notes)" = null ] || fail "inputs ignored: $r"
    [ "$(printf "%s\n" "$r" | jq -r .output.effort_days)" = \
        "$(printf "%s\n" "$cto" | jq -r .output.effort_days)" ] || fail "effort: $r"
    for a in coo_agent reconcile_gpt; do
        ! grep -Eq "Sanitizer|runtime error" "$R/$a.log" || fail "sanitizer report in $a.log"
    done
    ok "cto, coo and reconcile agents: $(printf "%s\n" "$r" | jq -r .output.summary)"
    ;;
denied)
    # the agent's budget is 100000 tokens: a 200000-token hold is refused
    control '{"scenario":"usage"}'
    r=$(step big llm '{"model":"big"}' 200000 3000 "$TEXT")
    [ "$(printf "%s\n" "$r" | jq -r .status)" = denied ] || fail "status: $r"
    [ "$(printf "%s\n" "$r" | jq -r .error.code)" = exceeds_budget ] || fail "code: $r"
    [ "$(printf "%s\n" "$r" | jq -r '.error.reason | length > 0')" = true ] || fail "reason: $r"
    [ "$(printf "%s\n" "$r" | jq -r .error.dimension)" = tokens ] || fail "dimension: $r"
    [ "$(requests)" = 0 ] || fail "a denied step made a request"
    [ "$(used tokens)" = 0 ] || fail "a denied step spent tokens"
    ok "denied reserve passed back with the ledger's reason: $(printf "%s\n" "$r" | jq -r .error.reason)"
    ;;
concurrency)
    # concurrency is 2: three slow steps at once reach the provider two by two
    control '{"scenario":"slow:1000"}'
    for k in 1 2 3; do
        step "c$k" llm '{"model":"big"}' 3000 5000 "$TEXT" >"$R/c$k.json" &
        CPIDS="${CPIDS:-} $!"
    done
    for p in $CPIDS; do wait "$p"; done
    for k in 1 2 3; do
        [ "$(jq -r .status "$R/c$k.json")" = ok ] || fail "step c$k: $(cat "$R/c$k.json")"
    done
    [ "$(requests)" = 3 ] || fail "want 3 requests, got $(requests)"
    [ "$(jq -s 'map(.inflight) | max' "$R/llm-requests.log")" = 2 ] ||
        fail "in flight: $(jq -s -c 'map(.inflight)' "$R/llm-requests.log")"
    ok "three steps ran two at a time"
    ;;
errors)
    control '{"scenario":"401"}'
    r=$(step e401 llm '{"model":"big"}' 3000 3000 "$TEXT")
    [ "$(printf "%s\n" "$r" | jq -r .status)" = error ] || fail "401 status: $r"
    [ "$(printf "%s\n" "$r" | jq -r .error.code)" = provider_rejected ] || fail "401 code: $r"
    printf "%s\n" "$r" | jq -r .error.reason | grep -q "401" || fail "401 reason: $r"
    [ "$(used tokens)" = 0 ] || fail "a refused call charged tokens"
    control '{"scenario":"usage"}'
    # a model the config names but the provider does not know
    r=$(step eghost llm '{"model":"ghost"}' 3000 3000 "$TEXT")
    [ "$(printf "%s\n" "$r" | jq -r .status)" = error ] || fail "unknown model status: $r"
    [ "$(printf "%s\n" "$r" | jq -r .error.code)" = provider_rejected ] || fail "unknown model code: $r"
    printf "%s\n" "$r" | jq -r .error.reason | grep -q "404" || fail "unknown model reason: $r"
    [ "$(used tokens)" = 0 ] || fail "an unknown model charged tokens"
    r=$(step emodel llm '{}' 3000 3000 "$TEXT")
    [ "$(printf "%s\n" "$r" | jq -r .status)" = ok ] || fail "default model: $r"
    spent=$(printf "%s\n" "$r" | jq -r .actual.tokens)
    control '{"scenario":"malformed"}'
    r=$(step ebad llm '{"model":"big"}' 3000 3000 "$TEXT")
    [ "$(printf "%s\n" "$r" | jq -r .status)" = error ] || fail "malformed status: $r"
    printf "%s\n" "$r" | jq -r .error.reason | grep -q "malformed" || fail "malformed reason: $r"
    [ "$(printf "%s\n" "$r" | jq -r .measured)" = estimated ] || fail "malformed measured: $r"
    [ "$(held tokens)" = 0 ] || fail "holds left open: $(held tokens)"
    spent=$((spent + $(printf "%s\n" "$r" | jq -r .actual.tokens)))
    [ "$(used tokens)" = "$spent" ] || fail "ledger tokens $(used tokens), steps reported $spent"
    # an answer too big for a step result still gets a (shortened) reply
    jq -cn '[range(128)] as $a | [range(128) | $a] as $b
            | {scenario: "usage", usage: [100, 900],
               content: ({summary: "big", risks: [], effort_days: 1, decision: "proceed",
                          confidence: 0.5, a: $b, b: $b, c: $b, d: $b, e: $b} | tojson)}' >"$R/big.json"
    curl -s -X POST "http://127.0.0.1:$PORT/control" -d @"$R/big.json" >/dev/null
    r=$(step ebig llm '{"model":"big"}' 3000 3000 "$TEXT")
    [ "$(printf "%s\n" "$r" | jq -r .status)" = ok ] || fail "big answer: $(printf "%.300s" "$r")"
    [ "$(printf "%s\n" "$r" | jq -r .output.truncated)" = true ] || fail "big output: $(printf "%.300s" "$r")"
    [ "$(printf "%s\n" "$r" | jq -r .actual.tokens)" = 1000 ] || fail "big spend: $(printf "%.300s" "$r")"
    # a response past the provider's size cap: cut off, outcome unknown
    { printf '{"scenario":"usage","content":"'
      head -c 700000 /dev/zero | tr '\0' x
      printf '"}'; } >"$R/huge.json"
    curl -s -X POST "http://127.0.0.1:$PORT/control" -d @"$R/huge.json" >/dev/null
    r=$(step ehuge llm '{"model":"big"}' 3000 3000 "$TEXT")
    [ "$(printf "%s\n" "$r" | jq -r .status)" = error ] || fail "huge: $r"
    printf "%s\n" "$r" | jq -r .error.reason | grep -q "exceeds 600000 bytes" || fail "huge: $r"
    [ "$(printf "%s\n" "$r" | jq -r .measured)" = whole_hold ] || fail "huge measured: $r"
    [ "$(printf "%s\n" "$r" | jq -r .actual.tokens)" = 3000 ] || fail "huge spend: $r"
    # ... but the time it took is known: not the hold's 3000 ms
    [ "$(printf "%s\n" "$r" | jq -r .actual.latency_ms)" -lt 3000 ] ||
        fail "an oversized answer was charged the hold's whole latency: $r"
    r=$(step eunknown llm '{"model":"nope"}' 3000 3000 "$TEXT")
    [ "$(printf "%s\n" "$r" | jq -r .code)" = invalid ] || fail "unknown model: $r"
    ok "401, unknown model, malformed and oversized answers are clear step errors, spend committed"
    ;;
hugeusage)
    # a provider that reports 2^62 completion tokens, twice: not credible,
    # so the spend is estimated; every account keeps its sign, the journal
    # verifies, and a later reserve meets the real 2 USD limit
    control '{"scenario":"usage","usage":[100,4611686018427387904]}'
    for k in 1 2; do
        r=$(step "huge$k" llm '{"model":"big"}' 3000 3000 "$TEXT")
        [ "$(printf "%s
" "$r" | jq -r .status)" = ok ] || fail "step $k: $r"
        [ "$(printf "%s
" "$r" | jq -r .measured)" = estimated ] || fail "measured $k: $r"
        t=$(printf "%s
" "$r" | jq -r .actual.tokens)
        [ "$t" -gt 0 ] && [ "$t" -le 3000 ] || fail "step $k charged $t tokens"
    done
    [ "$(held tokens)" = 0 ] || fail "holds left open: $(held tokens)"
    for q in '{"type":"spend","task":"t1"}' '{"type":"spend"}'; do
        a=$(call orchestrator ledger "$q")
        printf "%s
" "$a" | jq -e '.accounts | length > 0' >/dev/null || fail "spend: $a"
        printf "%s
" "$a" | jq -e '[.accounts[] | (.used, .held) | .[]] | all(. >= 0)' \
            >/dev/null || fail "an account changed sign: $a"
    done
    r=$(call cto_agent ledger '{"type":"reserve","request_id":"dear","task":"t1","step":"s",
        "amounts":{"tokens":10,"cost_uusd":1000000000}}')
    [ "$(printf "%s
" "$r" | jq -r .code)" = exceeds_budget ] || fail "1000 USD reserve: $r"
    [ "$(printf "%s
" "$r" | jq -r .dimension)" = cost_uusd ] || fail "1000 USD reserve: $r"
    kill -TERM "$LEDGER_PID"
    wait "$LEDGER_PID"
    "$LEDGER" --verify --db "$R/ledger.db" >"$R/verify.log" 2>&1 || fail "--verify: $(cat "$R/verify.log")"
    ok "2^62 reported tokens: estimated, no account changed sign, --verify passes"
    ;;
stepschema)
    # §9: a step with a field the schema does not declare, or inputs that
    # are not a map, is invalid; nothing is reserved or called
    r=$(step s1 llm '{"model":"big"}' 3000 3000 "$TEXT" '{"colour":"red"}')
    [ "$(printf "%s
" "$r" | jq -r .code)" = invalid ] || fail "unknown field: $r"
    printf "%s
" "$r" | jq -r .reason | grep -q "step.colour: unknown field" || fail "reason: $r"
    r=$(step s2 llm '{"model":"big"}' 3000 3000 "$TEXT" '{"inputs":5}')
    [ "$(printf "%s
" "$r" | jq -r .code)" = invalid ] || fail "inputs 5: $r"
    printf "%s
" "$r" | jq -r .reason | grep -q "step.inputs" || fail "reason: $r"
    r=$(step s3 llm '{"model":"big"}' 3000 3000 "$TEXT" '{"cost_ratio":7}')
    [ "$(printf "%s
" "$r" | jq -r .code)" = invalid ] || fail "cost_ratio 7: $r"
    [ "$(requests)" = 0 ] || fail "an invalid step called the provider"
    [ "$(used tokens)" = 0 ] && [ "$(held tokens)" = 0 ] || fail "an invalid step reserved"
    r=$(step s4 llm '{"model":"big"}' 3000 3000 "$TEXT" '{"inputs":{}}')
    [ "$(printf "%s
" "$r" | jq -r .status)" = ok ] || fail "a valid step: $r"
    ok "unknown field, inputs: 5 and cost_ratio: 7 are invalid; a valid step runs"
    # PROTOCOL.md §5, §11 under an access list: a misspelt service is
    # forbidden; ping reaches the ledger only where a rule allows it (here
    # "*" for orchestrator, nothing for emadsctl); the bus answers its own
    r=$(call orchestrator ledgr '{"v":1,"type":"spend"}')
    [ "$(printf "%s\n" "$r" | jq -r .code)" = forbidden ] || fail "misspelt service: $r"
    r=$(call orchestrator ledger '{"v":1,"type":"ping"}')
    [ "$(printf "%s\n" "$r" | jq -r .type)/$(printf "%s\n" "$r" | jq -r .service)" = pong/ledger ] ||
        fail "ping to the ledger, allowed: $r"
    r=$(call emadsctl ledger '{"v":1,"type":"ping"}')
    [ "$(printf "%s\n" "$r" | jq -r .code)" = forbidden ] || fail "ping to the ledger, no rule: $r"
    r=$(call orchestrator cto_agent '{"v":1,"type":"ping"}')
    [ "$(printf "%s\n" "$r" | jq -r .code)" = forbidden ] || fail "ping to an agent, no rule: $r"
    ok "a misspelt service is forbidden; ping goes where the access list lets it"
    ;;
limit_param)
    # o3 is configured with max_completion_tokens: the provider, which
    # refuses max_tokens for it, answers; o3-mini (same provider rule) is
    # configured without it and fails loudly with the provider's message
    r=$(step lp1 llm '{"model":"o3"}' 3000 3000 "$TEXT")
    want .status ok "o3"
    tail -n 1 "$R/llm-requests.log" | jq -e '.limit_param == "max_completion_tokens" and .status == 200' \
        >/dev/null || fail "o3 request: $(tail -n 1 "$R/llm-requests.log")"
    r=$(step lp2 llm '{"model":"o3-mini"}' 3000 3000 "$TEXT")
    want .status error "o3-mini"
    want .error.code provider_rejected "o3-mini code"
    printf "%s\n" "$r" | jq -r .error.reason | grep -q "Unsupported parameter: 'max_tokens'" ||
        fail "o3-mini reason hides the provider's message: $r"
    [ "$(grep -c '"status":400' "$R/llm-requests.log")" = 1 ] || fail "a 400 was retried"
    ok "max_completion_tokens sent where configured; max_tokens refused loudly with the provider's message"
    ;;
truncated)
    # a reasoning model that spent its output limit: finish_reason length
    control '{"scenario":"length","usage":[123,45]}'
    r=$(step tr1 llm '{"model":"big"}' 3000 3000 "$TEXT")
    want .status error "truncated status"
    want .error.code provider_error "truncated code"
    want .finish_reason length "finish_reason"
    printf "%s\n" "$r" | jq -r .error.reason | grep -q "cut off at the output limit" || fail "reason: $r"
    [ "$(printf "%s\n" "$r" | jq -c .output)" = '{}' ] || fail "a cut-off answer filled the output: $r"
    want .actual.cost_uusd 213 "not charged its usage"
    want .measured provider "measured"
    # an empty answer, and one without the role's keys: failed, nothing invented
    control '{"scenario":"empty"}'
    r=$(step tr2 llm '{"model":"big"}' 3000 3000 "$TEXT")
    printf "%s\n" "$r" | jq -r .error.reason | grep -q "empty answer" || fail "empty: $r"
    control '{"scenario":"usage","content":"{\"summary\": \"looks fine\"}"}'
    r=$(step tr3 llm '{"model":"big"}' 3000 3000 "$TEXT")
    want .status error "keyless answer accepted"
    want .error.code provider_error "an answer without the role's keys"
    [ "$(printf "%s\n" "$r" | jq -c .output)" = '{}' ] || fail "defaults filled in: $r"
    [ "$(used cost_uusd)" = $((3 * 213)) ] || fail "ledger: $(used cost_uusd)"
    ok "finish_reason length, empty and keyless answers are failed attempts charged their usage"
    ;;
refusal)
    control '{"scenario":"refusal","usage":[100,12]}'
    r=$(step rf1 llm '{"model":"big"}' 3000 3000 "$TEXT")
    want .status error "refusal status"
    want .error.code refused "refusal code"
    printf "%s\n" "$r" | jq -r .error.reason | grep -q "can't help with that" ||
        fail "the provider's text is not recorded: $r"
    want .measured provider "refusal not charged from usage"
    want .actual.tokens 112 "refusal tokens"
    [ "$(used cost_uusd)" = 124 ] || fail "refusal cost: $(used cost_uusd)"
    # a refused tool summary fails the step too: the tool's result alone
    # would hide it
    r=$(step rf2 tool '{"tool":"kb_search","model":"big"}' 1500 3000 \
        "How do we take card payments and handle refunds?")
    want .status error "refused summary"
    want .error.code refused "refused summary code"
    want .actual.tool_calls 1 "tool call not charged"
    ok "a refusal is charged from its usage and recorded refused with the provider's text"
    ;;
cached)
    # 1000 prompt tokens of which 600 cached, 100 out; big: 1.00 in, 0.25
    # cached, 2.00 out per 1M -> 400 + 150 + 200 uUSD
    control '{"scenario":"usage","usage":[1000,100],"cached":600,"served_model":"big-2024-08-06"}'
    r=$(step ca1 llm '{"model":"big"}' 3000 3000 "$TEXT")
    want .status ok "status"
    want .actual.cost_uusd 750 "cached tokens mispriced"
    want .served_model big-2024-08-06 "served model"
    want .model big "model"
    [ "$(used cost_uusd)" = 750 ] || fail "ledger: $(used cost_uusd)"
    ok "cached input priced at its own price; the served model is recorded"
    ;;
stream)
    # a streamed answer: usage from the stream's last chunk
    control '{"scenario":"usage","usage":[300,40]}'
    r=$(step st1 llm '{"model":"big-stream"}' 3000 3000 "$TEXT")
    want .status ok "stream"
    want .measured provider "stream usage"
    want .actual.cost_uusd 380 "stream cost"
    tail -n 1 "$R/llm-requests.log" | jq -e '.stream == true' >/dev/null || fail "not streamed"
    # the stream drips 300 ms per chunk, far longer than the 1500 ms hold:
    # closed at the hold, charged the input and the output received
    control '{"scenario":"drip:300","usage":null}'
    n=$(requests)
    r=$(step st2 llm '{"model":"big-stream"}' 3000 1500 "$TEXT")
    want .status error "cut stream"
    want .error.code timeout "cut code"
    want .measured estimated "cut measured"
    # the server logs a cut stream when it notices the client has gone
    i=0
    while [ "$(requests)" -le "$n" ] && [ $i -lt 100 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    [ "$(requests)" -gt "$n" ] || fail "the cut stream was never logged"
    tok=$(printf "%s\n" "$r" | jq -r .actual.tokens)
    prompt=$(tail -n 1 "$R/llm-requests.log" | jq -r .prompt_tokens)
    [ "$tok" -gt "$prompt" ] || fail "cut: the output received is not charged ($tok <= $prompt): $r"
    [ "$tok" -lt 3000 ] || fail "cut charged the whole hold: $r"
    [ "$(printf "%s\n" "$r" | jq -r .actual.cost_uusd)" -lt 5000 ] || fail "cut cost: $r"
    ok "streamed usage charged exactly; a stream cut at its hold is charged input + received, estimated"
    ;;
keyless)
    # a provider with no api_key_env (a local server) is called, without a key
    control '{"scenario":"usage","usage":[100,10],"require_key":null}'
    r=$(step kl1 llm '{"model":"free"}' 3000 3000 "$TEXT")
    want .status ok "keyless"
    want .path llm "keyless path"
    tail -n 1 "$R/llm-requests.log" | jq -e '.model == "free" and .auth == false' >/dev/null ||
        fail "keyless request: $(tail -n 1 "$R/llm-requests.log")"
    # the agent reports which providers it can use
    p=$(call orchestrator cto_agent '{"type":"providers"}')
    printf "%s\n" "$p" | jq -e '.providers[] | select(.provider == "open") | .usable and .key' \
        >/dev/null || fail "open provider report: $p"
    printf "%s\n" "$p" | jq -e '.providers[] | select(.provider == "nokey") | (.usable | not)' \
        >/dev/null || fail "a provider without its key is reported usable: $p"
    printf "%s\n" "$r" | jq -e '.providers | length == 4' >/dev/null || fail "step_result report: $r"
    ok "a keyless provider is called without a key; providers reported"
    ;;
anthropic)
    # 1000 prompt tokens: 600 read from the cache, 100 written to it, 300
    # plain; 100 out. claude: 3.00 in, 0.30 cached, 15.00 out per 1M
    # -> 400 * 3 + 600 * 0.3 + 100 * 15 = 2880 uUSD
    control '{"scenario":"usage","usage":[1000,100],"cached":600,"cache_write":100}'
    r=$(step an1 llm '{"model":"claude"}' 3000 3000 "$TEXT")
    want .status ok "anthropic"
    want .actual.tokens 1100 "anthropic tokens"
    want .actual.cost_uusd 2880 "anthropic cost"
    want .finish_reason end_turn "stop_reason"
    tail -n 1 "$R/llm-requests.log" |
        jq -e '.api == "anthropic" and .path == "/v1/messages" and .auth and .status == 200' \
        >/dev/null || fail "anthropic request: $(tail -n 1 "$R/llm-requests.log")"
    r=$(step an2 llm '{"model":"claude-stream"}' 3000 3000 "$TEXT")
    want .status ok "anthropic stream"
    want .actual.cost_uusd 2880 "anthropic stream cost"
    want .measured provider "anthropic stream"
    tail -n 1 "$R/llm-requests.log" | jq -e '.stream' >/dev/null || fail "not streamed"
    control '{"scenario":"length"}'
    r=$(step an3 llm '{"model":"claude"}' 3000 3000 "$TEXT")
    want .finish_reason max_tokens "max_tokens"
    want .status error "max_tokens status"
    control '{"scenario":"refusal"}'
    r=$(step an4 llm '{"model":"claude-stream"}' 3000 3000 "$TEXT")
    want .error.code refused "anthropic refusal"
    [ "$(used cost_uusd)" = $((2880 * 4)) ] || fail "ledger: $(used cost_uusd)"
    ok "Anthropic messages, plain and streamed: usage and cache tokens priced exactly"
    ;;
*)
    fail "unknown test $T"
    ;;
esac
# under sanitizers, any report in the agent's log fails the test
! grep -Eq "Sanitizer|runtime error" "$R/agent.log" || fail "sanitizer report in the agent's log"
exit 0
