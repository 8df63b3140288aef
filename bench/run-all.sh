#!/usr/bin/env bash
# The docs/benchmarks.md matrix: every case RUNS times (default 3), one JSON line per run appended to
# $RESULTS, then the median of each figure per case. Each run starts its own Redis, API and
# workers. Before each run it waits (up to 2 minutes) for the machine to be mostly idle, so
# other work (builds, tests) does not land inside a measurement; the JSON line records the CPU
# that other processes still took (`cpu_other_secs`).
#
#   cargo build --release -p inferq-bench -p inferq-api -p inferq-worker
#   scripts/setup.sh --bench-models          # the large model, once
#   bench/run-all.sh                          # all cases
#   bench/run-all.sh small-w1 large-w1        # some cases
#   bench/run-all.sh --summary                # medians of what $RESULTS already holds
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH=${BENCH:-target/release/inferq-bench}
RESULTS=${RESULTS:-target/bench-results.jsonl}
RUNS=${RUNS:-3}

declare -A CASES=(
  [small-w1]="--model mlp_small -n 20000 -c 32 --workers 1 --threads 2"
  [small-w2]="--model mlp_small -n 20000 -c 32 --workers 2 --threads 1"
  [small-sw]="--model mlp_small -n 20000 -c 32 --workers 1 --threads 2 --submit-wait --skip-raw"
  # The API with one async-runtime thread (TOKIO_WORKER_THREADS), as docs/configuration.md suggests when it shares a small machine.
  [small-w1-api1]="--model mlp_small -n 20000 -c 32 --workers 1 --threads 2 --api-runtime-threads 1"
  [large-oip-api1]="--model mlp_large --models-dir bench-models -n 5000 -c 32 --workers 1 --threads 2 --oip-binary --api-runtime-threads 1"
  [submit-only]="--model mlp_small -n 20000 -c 32 --submit-only --workers 0 --skip-raw"
  # Bulk submission (POST /jobs/batch, 100 jobs per request) against submit-only above.
  [submit-bulk]="--model mlp_small -n 100000 -c 8 --submit-only --bulk 100 --workers 0 --skip-raw"
  [c1-w1]="--model mlp_small -n 2000 -c 1 --workers 1 --threads 2 --skip-raw"
  [c1-w2]="--model mlp_small -n 2000 -c 1 --workers 2 --threads 1 --skip-raw"
  [large-w1]="--model mlp_large --models-dir bench-models -n 5000 -c 32 --workers 1 --threads 2"
  [large-oip]="--model mlp_large --models-dir bench-models -n 5000 -c 32 --workers 1 --threads 2 --oip-binary"
  [large-w2]="--model mlp_large --models-dir bench-models -n 5000 -c 32 --workers 2 --threads 1"
  # More clients than the targets ask for: how far queueing depth (bigger batches) moves it.
  [small-c128]="--model mlp_small -n 20000 -c 128 --workers 1 --threads 2 --skip-raw"
  [large-c128]="--model mlp_large --models-dir bench-models -n 5000 -c 128 --workers 1 --threads 2 --skip-raw"
  # Redis memory per finished job over 100,000 jobs, and the load generator's ceiling.
  [memory-100k]="--model mlp_small -n 100000 -c 32 --workers 1 --threads 2 --skip-raw"
  [small-ceiling]="--model mlp_small -n 20000 -c 32 --workers 1 --threads 2 --skip-raw --ceiling"
  # What each optional feature costs: compare with small-plain.
  [small-plain]="--model mlp_small -n 20000 -c 32 --workers 1 --threads 2 --skip-raw"
  [feature-idempotency]="--model mlp_small -n 20000 -c 32 --workers 1 --threads 2 --skip-raw --feature idempotency"
  [feature-priority]="--model mlp_small -n 20000 -c 32 --workers 1 --threads 2 --skip-raw --feature priority"
  [feature-deadline]="--model mlp_small -n 20000 -c 32 --workers 1 --threads 2 --skip-raw --feature deadline"
  [feature-cache]="--model mlp_small -n 20000 -c 32 --workers 1 --threads 2 --skip-raw --feature cache"
  [feature-quota]="--model mlp_small -n 20000 -c 32 --workers 1 --threads 2 --skip-raw --feature quota"
  [feature-webhook]="--model mlp_small -n 20000 -c 32 --workers 1 --threads 2 --skip-raw --feature webhook"
  [feature-retention]="--model mlp_small -n 20000 -c 32 --workers 1 --threads 2 --skip-raw --feature retention"
)
ORDER=(small-w1 small-w1-api1 small-w2 small-sw submit-only submit-bulk c1-w1 c1-w2 large-w1 large-oip large-oip-api1 large-w2 small-c128 large-c128 memory-100k small-ceiling small-plain feature-idempotency feature-priority feature-deadline feature-cache feature-quota feature-webhook feature-retention)

# Waits until the machine was at least 85% idle over one second (at most 2 minutes).
wait_quiet() {
  python3 - <<'EOF'
import time
def sample():
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return f[3] + f[4], sum(f[:8])
deadline = time.time() + 120
while time.time() < deadline:
    i0, t0 = sample(); time.sleep(1); i1, t1 = sample()
    if t1 > t0 and (i1 - i0) / (t1 - t0) >= 0.85:
        break
EOF
}

summary() {
  python3 - "$RESULTS" <<'EOF'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows.setdefault(r["case"], []).append(r)
fields = ["completed_per_sec", "accepted_per_sec", "p50_ms", "p90_ms", "p99_ms",
          "raw_batch1_per_sec", "raw_max_batch_per_sec", "ratio_raw_batch1", "ratio_raw_max_batch",
          "cpu_redis_secs", "cpu_api_secs", "cpu_workers_secs", "cpu_load_secs", "cpu_other_secs",
          "wall_secs", "api_vmhwm_bytes", "redis_memory_per_job_bytes", "ceiling_per_sec",
          "ratio_to_ceiling"]
for case, runs in rows.items():
    bad = sum(r["failed"] + r["rejected"] + r["lost"] for r in runs)
    print(f"{case}: {len(runs)} run(s), failed+rejected+lost = {bad}")
    for f in fields:
        vals = [r[f] for r in runs if r.get(f) is not None]
        if vals:
            print(f"  {f:<22} median {statistics.median(vals):>12.3f}   runs {', '.join(f'{v:.3f}' for v in vals)}")
EOF
}

if [[ ${1:-} == --summary ]]; then
  summary
  exit 0
fi
selected=("$@")
[[ ${#selected[@]} -gt 0 ]] || selected=("${ORDER[@]}")
mkdir -p "$(dirname "$RESULTS")"
for case in "${selected[@]}"; do
  [[ -n ${CASES[$case]:-} ]] || { echo "unknown case: $case (known: ${ORDER[*]})" >&2; exit 2; }
  for ((i = 1; i <= RUNS; i++)); do
    wait_quiet
    echo "== $case, run $i: $BENCH ${CASES[$case]}" >&2
    # shellcheck disable=SC2086 # the case strings are word lists on purpose
    "$BENCH" --json ${CASES[$case]} | sed "s/^{/{\"case\":\"$case\",\"date\":\"$(date -u +%FT%TZ)\",/" >>"$RESULTS"
  done
done
summary
