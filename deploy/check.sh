#!/usr/bin/env bash
# Checks every deployment file with the tools that own its format:
#   Prometheus config and alert rules: promtool check config / check rules / test rules
#   Grafana dashboard: valid JSON, and every panel query parses as PromQL (promtool, with
#     Grafana's variables replaced by sample values)
#   docker-compose.yml: docker compose config (or docker-compose config)
#   Kubernetes: kubectl kustomize renders deploy/kubernetes, kubernetes-validate --strict checks
#     every resource against the Kubernetes API schema
#   The image: the build script deploy/Dockerfile runs parses (bash -n), the files it copies exist
# Needs: promtool (Debian: prometheus), kubectl, kubernetes-validate (PyPI), docker compose or
# docker-compose (Debian: docker-compose), python3 with PyYAML. .ci/run installs them.
# The metric names in the dashboard and rules are checked against a running instance by
# `cargo test` (tests/it/ops.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "-- prometheus: configuration and alert rules"
promtool check config deploy/prometheus/prometheus.yml deploy/kubernetes/prometheus-scrape.yml
promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts.test.yml

echo "-- grafana: dashboard JSON, provisioning YAML, every query parses"
python3 - "$tmp/dashboard-queries.yml" <<'PY'
import json, sys, yaml
d = json.load(open("deploy/grafana/dialguard.json"))
for p in ("deploy/grafana/provisioning/datasources/prometheus.yml",
          "deploy/grafana/provisioning/dashboards/dialguard.yml"):
    yaml.safe_load(open(p))
subst = {"$__rate_interval": "5m", "$__range": "1d", "$__interval": "1m",
         "$instance": ".*", "$rule": ".*"}
rules, seen_ids = [], set()
def walk(panels):
    for p in panels:
        assert p["id"] not in seen_ids, f"panel id {p['id']} twice"
        seen_ids.add(p["id"])
        yield p
        yield from walk(p.get("panels", []))
for p in walk(d["panels"]):
    if p["type"] == "row":
        continue
    assert p.get("targets"), f"panel {p['title']!r} has no query"
    for t in p["targets"]:
        expr = t["expr"]
        for k, v in subst.items():
            expr = expr.replace(k, v)
        assert "$" not in expr, f"panel {p['title']!r}: unknown variable in {t['expr']}"
        rules.append({"record": f"dashboard:panel_{p['id']}_{t['refId']}", "expr": expr})
yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(sys.argv[1], "w"))
print(f"{len(seen_ids)} panels, {len(rules)} queries")
PY
promtool check rules "$tmp/dashboard-queries.yml" >/dev/null
echo "  every dashboard query parses"

echo "-- docker compose"
if docker compose version >/dev/null 2>&1; then
  docker compose -f deploy/docker-compose.yml config -q
else
  docker-compose -f deploy/docker-compose.yml config -q
fi
echo "  deploy/docker-compose.yml is valid"

echo "-- kubernetes"
kubectl kustomize deploy/kubernetes > "$tmp/kubernetes.yaml"
python3 -m kubernetes_validate --strict --quiet "$tmp/kubernetes.yaml" deploy/kubernetes/secret.example.yaml
echo "  $(grep -c '^kind:' "$tmp/kubernetes.yaml") resources render and validate"

echo "-- image: the build script the Dockerfile runs parses, the files it copies exist"
bash -n scripts/build-pgo.sh
grep -q 'scripts/build-pgo.sh' deploy/Dockerfile
sed -n 's/^COPY \([^-][^ ]*\) .*/\1/p' deploy/Dockerfile | while read -r f; do
  [ -e "$f" ] || { echo "deploy/Dockerfile copies $f, which is not here" >&2; exit 1; }
done
echo "  deploy/Dockerfile's inputs are here"
