#!/usr/bin/env bash
# The report in a real headless browser: a small cpu benchmark run, `longattn report` on it, and
# Chromium loading the page. Passes when the page's own check finds every chart with data and the
# browser logs no console error. With CP_RECORDS (records of `longattn cp` runs on GPUs) the report
# also holds the context-parallel charts; block-sparse cases add the keep-ratio chart.
# Usage: report_browser_test.sh LONGATTN_BINARY [CP_RECORDS.jsonl]
set -euo pipefail
cli=$1
cp_records=${2:-}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
  echo "report_browser_test: no chromium on PATH (scripts/setup.sh installs it)" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$cli" bench --backend cpu --mask causal,shared_question --seqlen 128,256 --heads 2:1 \
  --head-dim 32 --dtype fp32 --direction fwdbwd --reps 3 --min-reps 3 --out "$work/run" >/dev/null
for keep in 0.25 0.5; do
  "$cli" bench --backend cpu --mask block_sparse_uniform --sparse-block 32 --keep $keep \
    --seqlen 256 --heads 2:1 --head-dim 32 --dtype fp32 --direction fwdbwd --reps 3 --min-reps 3 \
    --json >>"$work/run/records.jsonl"
done
if [ -n "$cp_records" ]; then cat "$cp_records" >>"$work/run/records.jsonl"; fi
"$cli" report "$work/run" --out "$work/report" >/dev/null
for section in "Block-sparse TF/s against keep ratio" ${cp_records:+"forward weak scaling" "communication volume"}; do
  grep -q "$section" "$work/report/report.html" ||
    { echo "report_browser_test: no '$section' section" >&2; exit 1; }
done
"$browser" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run \
  --enable-logging=stderr --v=0 --virtual-time-budget=3000 --dump-dom \
  "file://$work/report/report.html" >"$work/dom.html" 2>"$work/browser.log" || true
status=$(grep -o 'data-status="[a-z]*"' "$work/dom.html" || true)
charts=$(grep -o 'data-charts="[0-9]*"' "$work/dom.html" || true)
echo "report_browser_test: $status $charts"
if grep -E 'CONSOLE|Uncaught' "$work/browser.log" | grep -iv 'level=0\|info\|verbose' >&2; then
  echo "report_browser_test: the browser logged console errors" >&2
  exit 1
fi
[ "$status" = 'data-status="ok"' ] || { echo "report_browser_test: the page's self-check failed" >&2; cat "$work/browser.log" | tail -20 >&2; exit 1; }
