#!/usr/bin/env bash
# The shipped monitoring files: contrib/prometheus/emads-rules.yml passes
# `promtool check rules` and its unit tests (`promtool test rules
# emads-rules.test.yml`); contrib/grafana/emads.json is a dashboard whose
# every panel has a Prometheus query and a place on the grid. (That the
# queries name metrics the daemons really export is checked by metrics.sh,
# which scrapes them.)
set -eu
src=${1:?usage: rules.sh SOURCE_ROOT}
command -v promtool >/dev/null || { echo "promtool not installed: skipped"; exit 77; }
command -v jq >/dev/null || { echo "jq not installed: skipped"; exit 77; }
cd "$src/contrib/prometheus"
promtool check rules emads-rules.yml
promtool test rules emads-rules.test.yml
dash="$src/contrib/grafana/emads.json"
jq -e '.panels | length >= 8' "$dash" >/dev/null || { echo "FAIL: too few panels in $dash"; exit 1; }
bad=$(jq -r '.panels[] | select((.targets | length) == 0 or any(.targets[]; (.expr // "") == "")
                                or .gridPos == null or .datasource.type != "prometheus") | .title' "$dash")
[ -z "$bad" ] || { echo "FAIL: panels without a query, a datasource or a position: $bad"; exit 1; }
dups=$(jq -r '[.panels[].id] | group_by(.) | map(select(length > 1)) | length' "$dash")
[ "$dups" = 0 ] || { echo "FAIL: duplicate panel ids in $dash"; exit 1; }
for want in emads_spend_usd_total emads_ledger_remaining_usd emads_ledger_denials_total \
            emads_step_duration_seconds_bucket emads_llm_call_duration_seconds_bucket \
            emads_ledger_request_duration_seconds_bucket emads_tasks_total; do
    jq -e --arg m "$want" 'any(.panels[].targets[]; .expr | contains($m))' "$dash" >/dev/null ||
        { echo "FAIL: no panel shows $want"; exit 1; }
done
echo "rules and dashboard: ok"
