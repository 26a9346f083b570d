#!/bin/bash
# A/B timing of benchmarks.meta_step between two revisions on this host.
#
#   bash benchmarks/ab_meta_step.sh REV_A REV_B ROUNDS OUT.jsonl [meta_step flags]
#
# Checks both revisions out into temporary worktrees and runs
# `python -m benchmarks.meta_step FLAGS` alternately (A, B, A, B, ...) ROUNDS
# times each, so slow drifts of the machine hit both alike. Every JSON row is
# written to OUT.jsonl with "rev" and "round" added; the summary prints the
# median seconds per meta-step of each algorithm per revision and B / A.
# Give flags that both revisions accept and that mean the same in both.
set -euo pipefail
A=$1; B=$2; ROUNDS=$3; OUT=$4; shift 4
PY=${PY:-$(pwd)/.venv/bin/python}
TMP=$(mktemp -d)
trap 'git worktree remove --force "$TMP/a" 2>/dev/null; git worktree remove --force "$TMP/b" 2>/dev/null; rm -rf "$TMP"' EXIT
git worktree add -q --detach "$TMP/a" "$A"
git worktree add -q --detach "$TMP/b" "$B"
: > "$OUT"
for round in $(seq 1 "$ROUNDS"); do
  for side in a b; do
    rev=$([ $side = a ] && echo "$A" || echo "$B")
    (cd "$TMP/$side" && "$PY" -m benchmarks.meta_step "$@") 2>/dev/null \
      | grep '"algorithm"' \
      | "$PY" -c "import json, sys
for line in sys.stdin:
  row = json.loads(line); row.update(rev='$rev', round=$round)
  print(json.dumps(row))" >> "$OUT"
    echo "round $round $rev done" >&2
  done
done
"$PY" - "$OUT" "$A" "$B" <<'PYEOF'
import json, statistics, sys
out, a, b = sys.argv[1:]
rows = [json.loads(l) for l in open(out)]
algs = sorted({r["algorithm"] for r in rows}, key=[r["algorithm"] for r in rows].index)
print(f"| algorithm | {a} s/step (median) | {b} s/step (median) | B / A | runs each |")
print("|---|---:|---:|---:|---:|")
for alg in algs:
  t = {rev: [r["s_per_step"] for r in rows if r["algorithm"] == alg and r["rev"] == rev] for rev in (a, b)}
  ma, mb = statistics.median(t[a]), statistics.median(t[b])
  print(f"| {alg} | {ma:.4f} | {mb:.4f} | {mb / ma:.3f} | {len(t[a])} |")
PYEOF
