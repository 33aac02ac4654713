#!/usr/bin/env bash
# Start the embedded service (SQLite, local artifact folder, embedded broker: no Docker, no servers)
# and run its main job: bundled MiniLM-L6 on SST-2, 1-bit weights, 8-bit activations, half depth.
# Then download the checkpoint over HTTP, check its sha256, and re-evaluate it locally.
#   BUDGET=smoke bash scripts/demo.sh     # ~1 minute on CPU
#   bash scripts/demo.sh                  # quick budget (default): a real student, about half an hour on 2 CPU cores
set -euo pipefail
cd "$(dirname "$0")/.."

BUDGET="${BUDGET:-quick}"
PORT="${PORT:-8000}"
DATA="${DATA:-./xtc-data}"
OUT="${OUT:-./xtc-demo-checkpoint}"
export XTC_GLUE_DIR="${XTC_GLUE_DIR:-$(cd .. && pwd)/shared/data/glue}"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"

if [ ! -x .venv/bin/xtc ]; then
  echo "== installing into .venv (torch 2.13.0 CPU build, core + api extras)"
  python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q torch==2.13.0
  .venv/bin/python -m pip install -q -e ".[core,api]"
fi
PATH="$PWD/.venv/bin:$PATH"

echo "== starting the embedded service on port $PORT (data in $DATA)"
xtc serve --port "$PORT" --data-dir "$DATA" > "$DATA.serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 120); do
  curl -sf "http://127.0.0.1:$PORT/readyz" > /dev/null && break
  kill -0 $SERVER 2>/dev/null || { cat "$DATA.serve.log"; exit 1; }
  sleep 1
done
KEY="$(cat "$DATA/api_key")"
API="http://127.0.0.1:$PORT"
AUTH="Authorization: Bearer $KEY"

echo "== POST /jobs (bundled:minilm-l6, sst2, W1A8, 3 layers, budget $BUDGET)"
JOB=$(curl -sf -H "$AUTH" -H 'Content-Type: application/json' -X POST "$API/jobs" -d "{
  \"model\": \"bundled:minilm-l6\", \"task\": \"sst2\",
  \"compression\": {\"weight_bits\": 1, \"activation_bits\": 8, \"layers\": 3},
  \"training\": {\"budget\": \"$BUDGET\"}}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
echo "job $JOB"

while true; do
  STATE=$(curl -sf -H "$AUTH" "$API/jobs/$JOB")
  STATUS=$(echo "$STATE" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["status"])')
  echo "$STATE" | python3 -c 'import json,sys; j=json.load(sys.stdin); eta=j["eta_seconds"]
print("  %-9s stage=%s progress=%3.0f%%%s" % (j["status"], j["stage"], 100 * j["progress"],
      " eta=%.0fs" % eta if eta else ""))'
  case "$STATUS" in succeeded|failed|cancelled) break ;; esac
  sleep 5
done
if [ "$STATUS" != succeeded ]; then echo "$STATE"; exit 1; fi

echo "== downloading artifacts into $OUT"
rm -rf "$OUT" && mkdir -p "$OUT"
curl -sf -H "$AUTH" "$API/jobs/$JOB/artifacts" | python3 -c 'import json,sys
for a in json.load(sys.stdin)["data"]: print(a["name"], a["sha256"])' | while read -r NAME SHA; do
  curl -sf -H "$AUTH" -o "$OUT/$NAME" "$API/jobs/$JOB/artifacts/$NAME"
  echo "$SHA  $OUT/$NAME" | sha256sum -c --quiet
  echo "  $NAME ok"
done

echo "== the reported metrics, and the downloaded checkpoint re-evaluated here"
OUT="$OUT" python3 -c 'import json,os; m=json.load(open(os.environ["OUT"] + "/metrics.json"))
print("  teacher", m["teacher"], "student", m["student"], "ratio %.1fx" % m["ratio"])'
xtc eval "$OUT" --task sst2 --json
xtc inspect "$OUT" --json | python3 -c 'import json,sys; r=json.load(sys.stdin)
print("  %s bytes on disk vs %s fp32: %.1fx" % (r["packed_bytes"], r["fp32_bytes"], r["ratio"]))'
