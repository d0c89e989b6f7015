#!/usr/bin/env bash
# Writes a policy file with CONFIG's [engine] table and its rules (its packs' and its own)
# written out, leaving out the rules named: what a rule or a group of rules costs is then the
# difference between two replays (docs/performance.md, "A profile-guided build", its "Where
# that 30% is").
#   scripts/leave-out.sh CONFIG OUT [RULE_ID...]
# e.g. scripts/leave-out.sh config/dialguard.toml /tmp/no-phone.toml cla-debtors-per-number
#      dialguard replay --config /tmp/no-phone.toml --input FILE --now 2026-12-01T00:00:00Z
# Needs python3 (3.11 or later: tomllib). Each rule is copied as its file has it; with none left
# out, replay gives the same alerts but for their `pack` (rules written out belong to none).
set -euo pipefail
if [ $# -lt 2 ]; then
  sed -n '2,9p' "$0" >&2
  exit 2
fi
python3 - "$@" <<'EOF'
import json, pathlib, re, sys, tomllib

cfg, out, *names = sys.argv[1:]
drop = set(names)
cfg = pathlib.Path(cfg)


def blocks(path):
    """The [[rules]] blocks of a file, in order, each with its id (its sub-tables included)."""
    text = path.read_text()
    ids = [r["id"] for r in tomllib.loads(text).get("rules", [])]
    found, cur = [], None
    for line in text.splitlines(keepends=True):
        if re.match(r"\s*\[\[rules\]\]", line):
            cur = [line]
            found.append(cur)
        elif re.match(r"\s*\[", line) and not re.match(r"\s*\[rules\.", line):
            cur = None  # another table: the rule ended
        elif cur is not None:
            cur.append(line)
    if len(found) != len(ids):
        sys.exit(f"leave-out: {path}: {len(ids)} rules, {len(found)} [[rules]] blocks found")
    return list(zip(ids, ("".join(b) for b in found)))


conf = tomllib.loads(cfg.read_text())
rules = []
for pack in conf.get("policy", {}).get("packs", []):
    rules += blocks(cfg.parent / pack)
rules += blocks(cfg)
unknown = drop - {i for i, _ in rules}
if unknown:
    sys.exit(f"leave-out: no rule {', '.join(sorted(unknown))} in {cfg}")

lines = ["[engine]\n"]
for k, v in conf.get("engine", {}).items():
    if isinstance(v, dict):
        sys.exit(f"leave-out: [engine] {k} is a table: not written out")
    lines.append(f"{k} = {json.dumps(v)}\n")
for i, b in rules:
    if i not in drop:
        lines.append("\n" + b)
pathlib.Path(out).write_text("".join(lines))
print(f"{out}: {len(rules) - len(drop)} of {len(rules)} rules", file=sys.stderr)
EOF
