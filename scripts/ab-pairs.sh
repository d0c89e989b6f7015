#!/usr/bin/env bash
# Two builds of dialguard, replayed alternately in N pairs on one input, the order swapped each
# pair: what one change is worth on a machine whose speed drifts by a fifth from one minute to
# the next (docs/performance.md). Prints each build's median calls/s, the median of the pairs'
# ratios (B ÷ A) and in how many pairs B was faster (a sign test: 16 of 21 is p ≈ 0.013).
#   scripts/ab-pairs.sh A B N [CONFIG] [FILE]
# e.g. scripts/ab-pairs.sh /tmp/dg-before /tmp/dg-after 21
# CONFIG: default config/dialguard.toml; FILE: default /tmp/dialguard-bench-1000000.jsonl
# (`dialguard generate --calls 1000000 --seed 7 --days 14`). No alerts are written.
set -euo pipefail
if [ $# -lt 3 ]; then
  sed -n '2,9p' "$0" >&2
  exit 2
fi
a=$1 b=$2 n=$3
config=${4:-config/dialguard.toml}
file=${5:-/tmp/dialguard-bench-1000000.jsonl}
rate() {
  "$1" replay --config "$config" --input "$file" --now 2026-12-01T00:00:00Z 2>&1 |
    awk '/events\/s/ {print $2}'
}
ra=() rb=()
for i in $(seq 1 "$n"); do
  if [ $((i % 2)) = 0 ]; then
    x=$(rate "$a"); y=$(rate "$b")
  else
    y=$(rate "$b"); x=$(rate "$a")
  fi
  ra+=("$x") rb+=("$y")
  echo "pair $i: A $x  B $y" >&2
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
ratios=()
faster=0
for i in "${!ra[@]}"; do
  ratios+=("$(awk -v x="${ra[$i]}" -v y="${rb[$i]}" 'BEGIN {printf "%.4f", y / x}')")
  if [ "${rb[$i]}" -gt "${ra[$i]}" ]; then faster=$((faster + 1)); fi
done
echo "A $a: median $(median "${ra[@]}") calls/s"
echo "B $b: median $(median "${rb[@]}") calls/s"
echo "B ÷ A: median of the pairs' ratios $(median "${ratios[@]}"); B faster in $faster of $n pairs"
