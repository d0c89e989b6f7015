#!/usr/bin/env bash
# The replay benchmark (README "Performance"): generate a synthetic workload, then time
# `dialguard replay` end to end (read, decode, judge, write alerts) under a policy, several runs.
#
#   scripts/bench-replay.sh [CALLS] [CONFIG] [RUNS]
#   scripts/bench-replay.sh 1000000 config/bench.toml 3
#
# CONFIG defaults to config/bench.toml (all four rule kinds). Prints one line per run and the
# median events/s. Files go to ${TMPDIR:-/tmp}. DIALGUARD_BIN=FILE measures that binary instead
# of building one (e.g. scripts/build-pgo.sh's target/pgo/dialguard).
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${1:-1000000}
config=${2:-config/bench.toml}
runs=${3:-3}
tmp=${TMPDIR:-/tmp}
input="$tmp/dialguard-bench-$calls.jsonl"

bin=${DIALGUARD_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release --quiet
  bin=./target/release/dialguard
fi
if [ ! -s "$input" ]; then
  "$bin" generate --calls "$calls" --seed 7 --days 14 --out "$input"
fi
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); input $(wc -l <"$input") lines, $(du -h "$input" | cut -f1); policy $config"
rates=()
for i in $(seq "$runs"); do
  out=$("$bin" replay --config "$config" --input "$input" --alerts "$tmp/dialguard-bench-alerts.jsonl" 2>&1)
  rate=$(echo "$out" | awk '/events\/s/ {print $2}')
  alerts=$(echo "$out" | awk '$1 == "alerts" {print $2}')
  secs=$(echo "$out" | awk '/elapsed/ {print $2}')
  echo "run $i: ${secs}s, $alerts alerts, $rate events/s"
  rates+=("$rate")
  # Each run writes a file that does not exist yet: replay truncating the last run's would have
  # ext4 (auto_da_alloc) flush it on closing, inside the run (scripts/ab-replay.sh says more).
  rm -f "$tmp/dialguard-bench-alerts.jsonl"
done
printf '%s\n' "${rates[@]}" | sort -n | awk '{a[NR]=$1} END {print "median events/s: " a[int((NR+1)/2)]}'
