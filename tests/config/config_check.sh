#!/bin/sh
# config_check.sh EMADSCTL SRC_ROOT - system test of `emadsctl config check`:
# the shipped configuration passes (exit 0), a copy with an unknown key fails
# with exit 2 and names the file, the line and the key.
set -u
ctl=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
E2E_HELPERS_ONLY=1 . "$(dirname "$0")/../e2e/lib.sh" # edit_cfg
fail=0
check() { # description, condition result
    if [ "$2" -eq 0 ]; then echo "ok - $1"; else echo "not ok - $1"; fail=1; fi
}

# 1. the shipped configuration is valid
"$ctl" config check "$src/config/emads.yaml" >"$tmp/out" 2>"$tmp/err"
rc=$?
check "shipped config: exit 0 (got $rc)" "$([ $rc -eq 0 ]; echo $?)"
grep -q 'cto_agent' "$tmp/out"
check "summary lists cto_agent" $?
grep -q -E '^ +total_task_budget .* 20\.000000$' "$tmp/out"
check "summary shows the total task budget in USD" $?
grep -q -E '^ +gpt-4o +in 2\.500000 +out 10\.000000' "$tmp/out"
check "summary lists models with their prices" $?
grep -q -E '^ +kb_search +emads-kb-search' "$tmp/out"
check "summary lists tools" $?

# 2. --json gives an object with the seed budgets in micro-USD
"$ctl" --json config check "$src/config/emads.yaml" >"$tmp/json" 2>"$tmp/err"
rc=$?
check "--json: exit 0 (got $rc)" "$([ $rc -eq 0 ]; echo $?)"
grep -q -E '"cost_uusd": ?20000000' "$tmp/json"
check "--json: total task budget 20000000 micro-USD" $?

# 3. an unknown key: exit 2 and file:LINE: key: reason
mkdir "$tmp/cfg"
cp -r "$src/config/." "$tmp/cfg/"
line=$(grep -n '^  beam_width:' "$tmp/cfg/emads.yaml" | cut -d: -f1)
edit_cfg "$tmp/cfg/emads.yaml" "${line}a\\  beam_widht: 8"
bad=$((line + 1))
"$ctl" config check "$tmp/cfg/emads.yaml" >"$tmp/out" 2>"$tmp/err"
rc=$?
check "unknown key: exit 2 (got $rc)" "$([ $rc -eq 2 ]; echo $?)"
grep -q "^$tmp/cfg/emads.yaml:$bad: planner.beam_widht: unknown key" "$tmp/err"
check "unknown key: reported as emads.yaml:$bad: planner.beam_widht: unknown key" $?

# 4. a bad budget in the budgets file is reported against that file
cp "$src/config/emads.yaml" "$tmp/cfg/emads.yaml"
edit_cfg "$tmp/cfg/agents_budget.yaml" 's/max_cost_usd: 1.50}/max_cost_usd: -1.50}/'
line=$(grep -n 'coo_agent:' "$tmp/cfg/agents_budget.yaml" | cut -d: -f1)
"$ctl" config check "$tmp/cfg/emads.yaml" >"$tmp/out" 2>"$tmp/err"
rc=$?
check "negative budget: exit 2 (got $rc)" "$([ $rc -eq 2 ]; echo $?)"
grep -q "agents_budget.yaml:$line: budgets.coo_agent.max_cost_usd: must not be negative" "$tmp/err"
check "negative budget: reported on line $line of agents_budget.yaml" $?

# expect_invalid DESCRIPTION FILE PATTERN: config check FILE exits 2 and
# prints an error line matching PATTERN (grep) on stderr.
expect_invalid() {
    "$ctl" config check "$2" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    check "$1: exit 2 (got $rc)" "$([ $rc -eq 2 ]; echo $?)"
    grep -q "$3" "$tmp/err"
    check "$1: reported as '$3' ($(head -n 1 "$tmp/err"))" $?
}

# 6. a workflow step naming an agent without a budget (the cfo example
#    with its budget line removed): the error names the agent and the step
mkdir "$tmp/cfo"
cp "$src/config/examples/cfo/emads.yaml" "$src/config/examples/cfo/agents_budget.yaml" "$tmp/cfo/"
edit_cfg "$tmp/cfo/emads.yaml" 's|^knowledge_dir: ../../kb|knowledge_dir: ""|'
"$ctl" config check "$tmp/cfo/emads.yaml" >"$tmp/out" 2>"$tmp/err"
rc=$?
check "cfo example: exit 0 (got $rc; $(cat "$tmp/err"))" "$([ $rc -eq 0 ]; echo $?)"
grep -q -E '^ +cfo_agent +role cfo' "$tmp/out"
check "cfo example: summary lists cfo_agent with role cfo" $?
"$ctl" --json config check "$tmp/cfo/emads.yaml" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); r=[r for r in d["roles"] if r["name"] == "cfo"][0]; assert r["rules"] == "general" and r["schema"]["cost_estimate_usd"] == {"type": "number", "min": 0, "max": 1000000000} and r["schema"]["roi"]["values"] == ["low", "medium", "high"], r'
check "cfo example --json: the cfo role with its rule set and schema" $?
edit_cfg "$tmp/cfo/agents_budget.yaml" '/^  cfo_agent:/d'
expect_invalid "agent without a budget" "$tmp/cfo/emads.yaml" \
    "agents_budget.yaml:[0-9]*: budgets: agent 'cfo_agent' has no budget (every agent needs one); used by workflow step emads_pr.cfo_analysis"

# 7. a role without a schema: file:line of the role
cp "$src/config/emads.yaml" "$tmp/cfg/emads.yaml"
cp "$src/config/agents_budget.yaml" "$tmp/cfg/agents_budget.yaml"
python3 - "$tmp/cfg/emads.yaml" <<'PY' || { echo "FAIL: the schema edit did not match (above)" >&2; exit 1; }
import re, sys
p = sys.argv[1]
s = open(p).read()
# drop the coo role's schema block (the schema: line and its indented keys)
s, n = re.subn(r"(\n  coo:\n(?:    (?!schema:).*\n)*)    schema:\n(?:      .*\n)+", r"\1", s, count=1)
assert n == 1, "no schema block under the coo role"
open(p, "w").write(s)
PY
line=$(grep -n '^  coo:$' "$tmp/cfg/emads.yaml" | head -1 | cut -d: -f1)
expect_invalid "role without a schema" "$tmp/cfg/emads.yaml" \
    "emads.yaml:$line: roles.coo.schema: role 'coo' has no schema"

# 8. a tool the role may not use: the coo step given the kb_search tool
cp "$src/config/emads.yaml" "$tmp/cfg/emads.yaml"
line=$(grep -n '^        agent: coo_agent' "$tmp/cfg/emads.yaml" | cut -d: -f1)
line=$((line + 3)) # "options:" follows needs; insert as the first option
edit_cfg "$tmp/cfg/emads.yaml" "$((line - 1))a\\          - {path: tool, tool: kb_search, latency_ms: 200, quality: 0.7}"
bad=$(grep -n 'quality: 0.7}' "$tmp/cfg/emads.yaml" | cut -d: -f1)
expect_invalid "tool not allowed for the role" "$tmp/cfg/emads.yaml" \
    "emads.yaml:$bad: workflows.emads_pr.steps\[2\].options\[0\].tool: tool 'kb_search' is not allowed for role 'coo' of agent 'coo_agent'"

# 9. provider and model keys of real providers: accepted and shown; bad
#    values reported with file:line
cp "$src/config/agents_budget.yaml" "$tmp/cfg/agents_budget.yaml"
cp "$src/config/emads.yaml" "$tmp/cfg/emads.yaml"
edit_cfg "$tmp/cfg/emads.yaml" 's|^  local_openai:|  claude_api:\
    kind: anthropic\
    base_url: "https://api.anthropic.test/v1"\
    api_key_env: ANTHROPIC_API_KEY\
  local_openai:|'
edit_cfg "$tmp/cfg/emads.yaml" 's|^models:|models:\
  o3: {provider: local_openai, input_usd_per_mtok: 2.00, cached_input_usd_per_mtok: 0.50, output_usd_per_mtok: 8.00, output_limit_param: max_completion_tokens, streaming: true}\
  claude: {provider: claude_api, input_usd_per_mtok: 3.00, cached_input_usd_per_mtok: 0.30, output_usd_per_mtok: 15.00}|'
"$ctl" --json config check "$tmp/cfg/emads.yaml" >"$tmp/json" 2>"$tmp/err"
rc=$?
check "provider and model keys: exit 0 (got $rc)" "$([ $rc -eq 0 ]; echo $?)"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); m={x["name"]: x for x in d["models"]}; p={x["name"]: x for x in d["providers"]}
assert m["o3"]["output_limit_param"] == "max_completion_tokens" and m["o3"]["streaming"] is True
assert m["o3"]["cached_input_uusd_per_mtok"] == 500000 and m["gpt-4o"]["cached_input_uusd_per_mtok"] == 2500000
assert p["claude_api"]["kind"] == "anthropic" and p["local_openai"]["kind"] == "openai"' "$tmp/json"
check "--json shows kind, output_limit_param, streaming and the cached price (default: input price)" $?
line=$(grep -n '^  o3:' "$tmp/cfg/emads.yaml" | cut -d: -f1)
edit_cfg "$tmp/cfg/emads.yaml" 's/output_limit_param: max_completion_tokens/output_limit_param: max_output/'
edit_cfg "$tmp/cfg/emads.yaml" 's/kind: anthropic/kind: gemini/'
kline=$(grep -n 'kind: gemini' "$tmp/cfg/emads.yaml" | cut -d: -f1)
expect_invalid "bad provider kind and output limit" "$tmp/cfg/emads.yaml" \
    "emads.yaml:$line: models.o3.output_limit_param: must be max_tokens or max_completion_tokens"
grep -q "emads.yaml:$kline: providers.claude_api.kind: must be openai or anthropic" "$tmp/err"
check "bad kind reported on line $kline" $?

# 5. usage errors exit 2
"$ctl" config frobnicate >/dev/null 2>&1
rc=$?
check "unknown subcommand: exit 2 (got $rc)" "$([ $rc -eq 2 ]; echo $?)"
"$ctl" --help | grep -q 'EXIT STATUS'
check "--help is a manual" $?

if [ $fail -ne 0 ]; then
    echo "--- last stderr:"; cat "$tmp/err"
fi
exit $fail
