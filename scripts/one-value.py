#!/usr/bin/env python3
"""How much of a call file a window that knows its one value can skip (docs/performance.md,
"A window that knows its one value"): the share of outbound calls whose number is called about
one debtor only in the whole file (`cla-debtors-per-number`'s windows), and the share of
third-party calls whose debtor has one third-party number only (`cla-third-parties-per-debtor`'s).
Numbers are compared by their last 11 digits (the generator's national and E.164 forms alike).
    scripts/one-value.py FILE      (FILE: `dialguard generate ... --out FILE`)"""
import collections
import json
import re
import sys

if len(sys.argv) != 2:
    sys.exit(__doc__)
debtors = collections.defaultdict(set)
by_number = collections.Counter()
parties = collections.defaultdict(set)
by_debtor = collections.Counter()
with open(sys.argv[1]) as f:
    for line in f:
        r = json.loads(line)
        if r.get("direction") != "outbound":
            continue
        number = re.sub(r"\D", "", r["phone"])[-11:]
        debtors[number].add(r["debtor_id"])
        by_number[number] += 1
        if r.get("relation") != "self":
            parties[r["debtor_id"]].add(number)
            by_debtor[r["debtor_id"]] += 1


def share(counts, values):
    return 100 * sum(n for k, n in counts.items() if len(values[k]) == 1) / max(1, sum(counts.values()))


print(f"outbound calls to a number called about one debtor: {share(by_number, debtors):.1f}%")
print(f"third-party calls of a debtor with one third-party number: {share(by_debtor, parties):.1f}%")
