#!/usr/bin/env bash
# bench/fidelity.py on a GPU host: the teacher once, then every (seed, variant group) in its own
# process at once (a MiniLM step is too small to fill a GPU: several processes share it), then one
# combining run that reads the cached runs and writes bench/results/fidelity_<task>_<tag>.{md,json}.
#
#   bench/fidelity_parallel.sh TAG SEEDS [extra bench/fidelity.py options...]
#   bench/fidelity_parallel.sh gpu-4x 1,2,3 --reduction-steps 1200 --quant-steps 3200
#
# Groups keep the variants that share a stage 1 (the content-keyed stage cache) in one process, so
# no two processes train the same stage. FIDELITY_GROUPS overrides them (space-separated, each a
# comma-separated variant list); FIDELITY_ARGS holds options common to every run (teacher schedule,
# work and results folders; split on spaces, so no spaces inside a value). Logs go to
# $FIDELITY_LOGS (default runs/fidelity-logs). With FIDELITY_DEADLINE (a time in seconds since the
# epoch) the parallel runs are stopped then; the table shows what finished (every run is cached as
# it ends, so a later call with the same options goes on from there). Exit status: 0 when every run
# finished, 3 when the deadline stopped some, 1 when a run failed.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 TAG SEEDS [bench/fidelity.py options...]" >&2
  exit 2
fi
tag=$1; seeds=$2; shift 2
py=${PYTHON:-python3}
logs=${FIDELITY_LOGS:-runs/fidelity-logs}
mkdir -p "$logs"
groups=${FIDELITY_GROUPS:-"xtc-fp-half,xtc-w1-half nokd-fp-half,nokd-w1-half xtc-w2 xtc-w1 nokd-w2 nokd-w1"}
# shellcheck disable=SC2206
common=(--tag "$tag" ${FIDELITY_ARGS:-} "$@")
for arg in "${common[@]}"; do
  # every process would retrain the shared teacher and empty the shared stage cache under the others
  if [ "$arg" = "--force" ]; then echo "--force: remove the work folder instead" >&2; exit 2; fi
done
all=$(echo "$groups" | tr -s ' \t\n' ',' | sed 's/,$//')

# 1. The teacher (and the runs that need no training), alone: every later process reuses its cache.
"$py" bench/fidelity.py "${common[@]}" --variants ptq-w2,ptq-w1,int8-dynamic >"$logs/teacher.log" 2>&1

# 2. One process per seed and group, unless the deadline has passed already.
limit=()
left=1
if [ -n "${FIDELITY_DEADLINE:-}" ]; then
  left=$((FIDELITY_DEADLINE - $(date +%s)))
  limit=(timeout "$left")  # `timeout 0` would mean no limit: left > 0 is checked below
fi
failed=0; stopped=0
if [ "$left" -gt 0 ]; then
  pids=()
  for seed in ${seeds//,/ }; do
    for group in $groups; do
      ${limit[@]+"${limit[@]}"} "$py" bench/fidelity.py "${common[@]}" --variants "$group" --seeds "$seed" \
        >"$logs/${group//,/+}-s$seed.log" 2>&1 &
      pids+=($!)
    done
  done
  for pid in "${pids[@]}"; do
    rc=0; wait "$pid" || rc=$?
    if [ "$rc" = 124 ]; then stopped=1; elif [ "$rc" != 0 ]; then failed=1; fi
  done
else
  stopped=1
fi
[ "$failed" = 0 ] || echo "some runs failed: see $logs" >&2
[ "$stopped" = 0 ] || echo "the deadline stopped some runs; the table shows the finished ones" >&2

# 3. Every finished run from the cache, one table.
"$py" bench/fidelity.py "${common[@]}" --variants "$all,ptq-w2,ptq-w1,int8-dynamic" --seeds "$seeds" --report-only \
  2>&1 | tee "$logs/combined.log"
if [ "$failed" != 0 ]; then exit 1; fi
if [ "$stopped" != 0 ]; then exit 3; fi
