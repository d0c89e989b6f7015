#!/usr/bin/env bash
# Old and new binaries alternately on one file, with DuckDB in each round: the A/B of the
# "Engine v2" tables (README, Performance; docs/performance.md). Prints one line per run
# (calls/s), then each figure's medians and the new binary's ratio to the old one's and, for
# the reference rules, to DuckDB's (python3 needed for the summary).
#   [OLD_CONFIG_DIR=DIR] [NEW_ENV="K=V ..."] [WARM_MIB=N] scripts/ab-replay.sh OLD_BIN NEW_BIN FILE [ROUNDS]
# FILE: `dialguard generate --calls 1000000 --seed 7 --days 14 --out FILE`.
# DuckDB: `pip install duckdb`; ../shared/bench/duckdb_reference.py beside the project.
# NEW_ENV: environment for the new binary's runs only (told apart by path), e.g. MIMALLOC_ALLOW_THP=1 (huge pages;
# the old binary has them as shipped). WARM_MIB: before every run (DuckDB's too), N MiB faulted
# in and freed by scripts/warm-memory.py, so that the run's huge pages come from memory the
# hypervisor already backs (docs/performance.md, "Huge pages on memory the host has backed").
set -euo pipefail
old=$1 new=$2 file=$3 rounds=${4:-3}
now=2026-12-01T00:00:00Z
here=$(cd "$(dirname "$0")/.." && pwd)
rules=$here/../shared/bench/reference-rules.toml
warm() { if [ "${WARM_MIB:-0}" -gt 0 ]; then python3 "$here/scripts/warm-memory.py" "$WARM_MIB" 2>/dev/null; fi; }
rate() { warm; "$@" 2>&1 | awk '/events\/s/ {print $2}'; }
# The new binary's runs, with NEW_ENV.
new_env() { if [ "$1" = "$new" ]; then echo env ${NEW_ENV:-}; else echo env; fi; }
all_rounds() {
  for round in $(seq "$rounds"); do
    for c in "$rules" "$here/config/dialguard.toml" "$here/config/bench.toml"; do
      for b in "$old" "$new"; do
        cb=$c
        # An old binary may refuse keys added to config/ since: OLD_CONFIG_DIR (the old commit's
        # config/, same rules) is used for it.
        if [ "$b" = "$old" ] && [ -n "${OLD_CONFIG_DIR:-}" ] && [ -f "$OLD_CONFIG_DIR/$(basename "$c")" ]; then
          cb=$OLD_CONFIG_DIR/$(basename "$c")
        fi
        echo "round $round no-alerts $(basename "$c") $b $(rate $(new_env "$b") "$b" replay --config "$cb" --input "$file" --now $now)"
      done
    done
    if [ -f "$here/../shared/bench/duckdb_reference.py" ]; then
      warm
      echo "round $round duckdb $(python3 "$here/../shared/bench/duckdb_reference.py" "$file" --threads 2)"
    fi
    # The first run that writes the ~1 GB of alerts after runs that wrote none spends ~0.4 s
    # more in the kernel than the next one (measured 2026-12-05, the same binary each time): a
    # run whose figure is dropped goes first, and the two binaries take turns going first.
    # Alerts go to a file that does not exist yet, as a first `--alerts out.jsonl` does: ext4
    # (`auto_da_alloc`, on by default) flushes a file truncated on opening when it is closed, and
    # replay opening one that `mktemp` had made spent that flush inside its run — about 0.5 s of a
    # gigabyte, 580,000 against 750,000 calls/s for the new binary (2026-12-06 evening;
    # docs/performance.md, "Eviction that reads only what has expired").
    dir=$(mktemp -d)
    $(new_env "$new") "$new" replay --config "$rules" --input "$file" --now $now --alerts "$dir/warm.jsonl" > /dev/null 2>&1
    rm -f "$dir/warm.jsonl"
    pair=("$old" "$new")
    if [ $((round % 2)) -eq 0 ]; then pair=("$new" "$old"); fi
    for b in "${pair[@]}"; do
      sync
      echo "round $round alerts-to-file reference-rules $b $(rate $(new_env "$b") "$b" replay --config "$rules" --input "$file" --now $now --alerts "$dir/alerts.jsonl")"
      rm -f "$dir/alerts.jsonl"
    done
    rmdir "$dir"
  done
}
# Every line printed is kept for the summary of medians at the end.
runs=$(mktemp)
trap 'rm -f "$runs"' EXIT
all_rounds | tee "$runs"
command -v python3 >/dev/null || exit 0
python3 - "$runs" "$old" "$new" <<'PY'
import json, statistics, sys
path, old, new = sys.argv[1:4]
runs, duck = {}, []
for line in open(path):
    p = line.split()
    if len(p) >= 3 and p[0] == "round" and p[2] == "duckdb":
        duck.append(json.loads(line.split("duckdb ", 1)[1])["calls_per_s"])
    elif len(p) == 6 and p[0] == "round" and p[5].isdigit():
        runs.setdefault((p[2], p[3]), {}).setdefault(p[4], []).append(int(p[5]))
print("medians (calls/s), new ÷ old:")
for (kind, cfg), by in runs.items():
    o, n = statistics.median(by.get(old, [0])), statistics.median(by.get(new, [0]))
    extra = ""
    if duck and cfg.startswith("reference-rules") and kind == "no-alerts":
        d = statistics.median(duck)
        extra = f"; DuckDB {d:,.0f}: new ÷ DuckDB {n / d:.2f}×"
    ratio = f"{n / o:.2f}×" if o else "n/a"
    print(f"  {kind} {cfg}: {o:,.0f} -> {n:,.0f}: {ratio}{extra}")
PY
