#!/usr/bin/env bash
# The monitoring against the real thing: runs `dialguard demo` (the service, librdkafka's mock
# broker and a synthetic dialer, in one process) and a real Prometheus scraping it with the job of
# deploy/prometheus/prometheus.yml and the rules of deploy/prometheus/alerts.yml, then
#   - checks every alert rule loaded and evaluates without error, and none fires on the healthy
#     demo;
#   - evaluates every query of the Grafana dashboard through Prometheus's HTTP API, and requires
#     each panel to show data, except the panels that only show trouble (errors).
# Everything listens on loopback and stops by itself. Needs: prometheus (Debian package of that
# name), python3, a release build (`cargo build --release`).
#
#   deploy/smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${DIALGUARD_BIN:-target/release/dialguard}
http=127.0.0.1:${SMOKE_HTTP_PORT:-39898}
prom=127.0.0.1:${SMOKE_PROM_PORT:-39090}
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# The demo with the opt-in per-partition lag series and statistics every second.
DIALGUARD__HTTP__LISTEN=$http \
DIALGUARD__KAFKA__PARTITION_LAG_METRIC=true \
DIALGUARD__KAFKA__CLIENT__STATISTICS_INTERVAL_MS=1000 \
RUST_LOG=warn \
  "$bin" demo --rate 2000 --seconds 90 --quiet >"$tmp/demo.log" 2>&1 &
pids+=($!)

# The compose setup's Prometheus configuration, pointed at the demo, scraping every second.
python3 - deploy/prometheus/prometheus.yml "$tmp/prometheus.yml" "$http" "$PWD/deploy/prometheus/alerts.yml" <<'PY'
import sys, yaml
src, dst, target, rules = sys.argv[1:]
c = yaml.safe_load(open(src))
c["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
c["rule_files"] = [rules]
(job,) = [j for j in c["scrape_configs"] if j["job_name"] == "dialguard"]
job["static_configs"] = [{"targets": [target]}]
yaml.safe_dump(c, open(dst, "w"))
PY
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/data" \
  --web.listen-address="$prom" >"$tmp/prometheus.log" 2>&1 &
pids+=($!)

# On failure, the demo's and Prometheus's last words: the temporary directory goes with the exit.
show_logs() {
  for f in demo prometheus; do
    echo "--- last lines of $f.log"
    tail -n 30 "$tmp/$f.log" 2>/dev/null || true
  done
}
if ! python3 - "$prom" <<'PY'
import json, sys, time, urllib.parse, urllib.request

prom = sys.argv[1]

def api(path, **params):
    url = f"http://{prom}/api/v1/{path}?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.load(r)
    if body["status"] != "success":
        raise SystemExit(f"{path} {params}: {body}")
    return body["data"]

# Prometheus up, the demo scraped and ready, and half a minute of samples for the rate windows.
deadline = time.time() + 120
while True:
    try:
        ready = api("query", query='dialguard_ready{job="dialguard"} == 1')["result"]
        if ready:
            break
    except OSError:
        pass
    if time.time() > deadline:
        raise SystemExit("the demo was not scraped, or never became ready")
    time.sleep(1)
time.sleep(30)

# Every rule loaded, healthy, and quiet on a healthy service.
groups = api("rules")["groups"]
rules = [r for g in groups for r in g["rules"]]
bad = [(r["name"], r.get("lastError")) for r in rules if r.get("health") != "ok"]
firing = [r["name"] for r in rules if r.get("state") == "firing"]
print(f"alert rules: {len(rules)} loaded, {len(bad)} unhealthy, {len(firing)} firing")
if not rules or bad or firing:
    raise SystemExit(f"unhealthy: {bad}; firing: {firing}")

# Every dashboard query, with Grafana's variables as a viewer of the default dashboard has them.
dash = json.load(open("deploy/grafana/dialguard.json"))
subst = {"$__rate_interval": "15s", "$__range": "1m", "$__interval": "1s",
         "$instance": ".*", "$rule": ".*"}
# Panels that show only trouble: empty on a healthy service.
trouble_only = {"Kafka client errors by class"}
empty = []
for p in dash["panels"]:
    if p["type"] == "row":
        continue
    series = 0
    for t in p["targets"]:
        q = t["expr"]
        for k, v in subst.items():
            q = q.replace(k, v)
        series += len(api("query", query=q)["result"])
    print(f"  {series:4d} series  {p['title']}")
    if series == 0 and p["title"] not in trouble_only:
        empty.append(p["title"])
if empty:
    raise SystemExit(f"dashboard panels without data on a running service: {empty}")
print("every dashboard panel shows data from the running service")
PY
then
  show_logs
  exit 1
fi
