#!/usr/bin/env bash
# CPU used by each thread of a command over a window of its run, from /proc: the per-thread
# figures of the README's Performance section (processing and decoder threads of `dialguard run`
# under the Kafka benchmark's load). Threads of one name are added up.
#   scripts/thread-cpu.sh DELAY SPAN -- COMMAND [ARGS...]
# DELAY: seconds after the start the window opens; SPAN: its length in seconds. Prints cores
# (CPU seconds per second) by thread name, then the command's last lines of output.
# Example: scripts/thread-cpu.sh 7 6 -- target/release/deps/kafka-HASH --bench --calls 2250000 --rate 150000
set -euo pipefail
if [ $# -lt 4 ] || [ "$3" != "--" ]; then
  echo "usage: $0 DELAY SPAN -- COMMAND [ARGS...]" >&2
  exit 2
fi
delay=$1 span=$2
shift 3
out=$(mktemp)
"$@" > "$out" 2>&1 &
pid=$!
hz=$(getconf CLK_TCK)
# tid|name|utime+stime (ticks); a thread that ends between the reads is skipped.
snap() {
  for t in /proc/"$pid"/task/*; do
    name=$(cat "$t/comm" 2>/dev/null) || continue
    st=$(sed 's/.*) //' "$t/stat" 2>/dev/null) || continue
    [ -n "$st" ] || continue
    set -- $st
    echo "$(basename "$t")|$name|$(( ${12} + ${13} ))"
  done | sort
}
sleep "$delay"
a=$(snap)
sleep "$span"
b=$(snap)
wait "$pid" || true
joined=$(join -t'|' <(echo "$a") <(echo "$b"))
echo "$joined" | awk -F'|' -v s="$span" -v hz="$hz" '
  { c[$2] += ($5 - $3) / hz / s }
  END { for (k in c) printf "%.2f cores\t%s\n", c[k], k }' | sort -nr
echo "$joined" | awk -F'|' -v s="$span" -v hz="$hz" '
  { t += ($5 - $3) / hz / s } END { printf "%.2f cores\tall threads\n", t }'
tail -n 3 "$out"
rm -f "$out"
