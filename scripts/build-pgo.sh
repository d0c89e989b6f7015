#!/usr/bin/env bash
# A profile-guided release build of `dialguard`: the binary the container image ships and the
# README's Performance figures marked "PGO" measure.
#   scripts/build-pgo.sh [OUT]          (OUT: default target/pgo/dialguard)
# 1. builds the binary instrumented (`-Cprofile-generate`, its own target directory);
# 2. runs it on a training workload: `replay` of generated calls (seed 11, not the benchmarks'
#    seed 7) under the default policy and `config/bench.toml`, with and without alerts and with
#    `--enforce` (the pre-dial check's path), from standard input and with a contact book, one
#    dialer format, and the service itself (`demo`: Kafka on the embedded broker, pre-dial
#    checks, statuses, the contact book);
# 3. merges the profiles (`llvm-profdata`, from rustup's llvm-tools component: its LLVM must be
#    rustc's) into target/pgo-use/dialguard.profdata and builds again with `-Cprofile-use`.
# Code the training never runs is optimised as cold (for size); every path above is run.
# Needs: what `cargo build --release` needs, rustup, ~8 minutes on two cores, ports 9898/9899
# free for the demo. Extra RUSTFLAGS are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/pgo/dialguard}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

host=$(rustc -vV | sed -n 's/^host: //p')
profdata="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
if [ ! -x "$profdata" ]; then
  echo "build-pgo: adding rustup's llvm-tools component (llvm-profdata)" >&2
  rustup component add llvm-tools >&2
fi
if [ ! -x "$profdata" ]; then
  echo "build-pgo: no llvm-profdata at $profdata (rustup component add llvm-tools)" >&2
  exit 1
fi

flags=${RUSTFLAGS:-}
# A fixed profile directory keeps RUSTFLAGS the same from run to run, so cargo reuses the
# instrumented build where the code has not changed; the profiles of an earlier run go first.
profiles=$PWD/target/pgo-generate/profiles
echo "== instrumented build" >&2
RUSTFLAGS="$flags -Cprofile-generate=$profiles" \
  cargo build --release --locked --bin dialguard --target-dir target/pgo-generate
bin=target/pgo-generate/release/dialguard
rm -rf "$profiles"

echo "== training" >&2
# Each run's output is shown only if it fails.
run() {
  "$@" > "$work/run.log" 2>&1 || {
    tail -20 "$work/run.log" >&2
    echo "build-pgo: training run failed: $*" >&2
    exit 1
  }
}
calls=$work/calls.jsonl
run "$bin" generate --calls 400000 --seed 11 --days 10 --invalid 0.01 --out "$calls"
for cfg in config/dialguard.toml config/bench.toml; do
  run "$bin" replay --config "$cfg" --input "$calls"
  run "$bin" replay --config "$cfg" --input "$calls" --alerts "$work/alerts.jsonl"
  run "$bin" replay --config "$cfg" --input "$calls" --enforce --alerts /dev/null
done
run "$bin" replay --config config/dialguard.toml --input - --alerts /dev/null < "$calls"
run "$bin" generate --contacts --calls 400000 --seed 11 --debtors 2000 --out "$work/book.jsonl"
run "$bin" replay --config config/dialguard.toml --input "$calls" --reference "$work/book.jsonl" \
  --alerts /dev/null
run "$bin" generate --calls 50000 --seed 12 --days 3 --format asterisk-cdr-csv --out "$work/cdr.csv"
run "$bin" replay --config config/dialers/asterisk.toml --input "$work/cdr.csv" --alerts /dev/null
# The service: ports 9898/9899 must be free. It must have judged calls and raised alerts.
run "$bin" demo --seconds 20 --rate 20000 --calls 400000 --quiet
grep -Eq "demo stopped: [0-9]+ calls sent, [1-9][0-9]* alerts" "$work/run.log" || {
  tail -20 "$work/run.log" >&2
  echo "build-pgo: the demo raised no alert" >&2
  exit 1
}

# The merged profile stays beside the build that used it: benchmarks built with it
# (`RUSTFLAGS=-Cprofile-use=$PWD/target/pgo-use/dialguard.profdata cargo bench --target-dir
# target/pgo-use ...`) measure the library as the binary has it.
mkdir -p target/pgo-use
"$profdata" merge -o target/pgo-use/dialguard.profdata "$profiles"

echo "== optimised build" >&2
RUSTFLAGS="$flags -Cprofile-use=$PWD/target/pgo-use/dialguard.profdata" \
  cargo build --release --locked --bin dialguard --target-dir target/pgo-use
mkdir -p "$(dirname "$out")"
install -m 0755 target/pgo-use/release/dialguard "$out"
echo "build-pgo: $out" >&2
