#!/usr/bin/env bash
# `longattn suite cp` as a user runs it: a 2-rank weak-scaling point under mpirun, the same again
# (resumed: nothing left to run), then the 1-rank point without mpirun into the same folder. Every
# case of the CPU grid must be recorded once per rank count and end ok.
# Usage: suite_cp_test.sh LONGATTN_BINARY "MPIRUN -np 2 [flags]"
set -euo pipefail
cli=$1
mpirun=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fast=(--warmup 1 --min-reps 1 --reps 2 --time-budget 0 --no-l2-flush)
records=$work/run/records.jsonl
count() { grep -c "\"ranks\":$1," "$records" || true; }
fail() { echo "suite_cp_test: $*" >&2; exit 1; }

want2=$("$cli" suite cp --dry-run --ranks 2 | wc -l)
want1=$("$cli" suite cp --dry-run --ranks 1 | wc -l)
[ "$want2" -gt "$want1" ] || fail "dry run: $want2 cases on 2 ranks, $want1 on 1"

# shellcheck disable=SC2086  # $mpirun is a command line
$mpirun "$cli" suite cp --out "$work/run" "${fast[@]}" >"$work/n2.log"
[ "$(count 2)" = "$want2" ] || fail "2 ranks: $(count 2) records, expected $want2"

# shellcheck disable=SC2086
$mpirun "$cli" suite cp --out "$work/run" "${fast[@]}" >"$work/n2-again.log"
grep -q "# 0 cases ($want2 already recorded)" "$work/n2-again.log" ||
  fail "the resumed run did not skip the recorded cases: $(grep '^# [0-9]' "$work/n2-again.log")"
[ "$(count 2)" = "$want2" ] || fail "the resumed run added records"

"$cli" suite cp --out "$work/run" "${fast[@]}" >"$work/n1.log"
[ "$(count 1)" = "$want1" ] || fail "1 rank: $(count 1) records, expected $want1"

total=$(wc -l <"$records")
ok=$(grep -c '"status":"ok"' "$records" || true)
[ "$ok" = "$total" ] || fail "$((total - ok)) of $total cases are not ok"
# Every timed phase carries its step trace, with the attention step in it.
traced=$(grep -c '"steps_ms":\[[^]]*"step":"attention"' "$records" || true)
[ "$traced" = "$total" ] || fail "$((total - traced)) of $total records have no traced attention step"
echo "suite_cp_test: $want2 cases on 2 ranks, $want1 on 1, resumed, all ok"
