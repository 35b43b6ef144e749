# Shared by the device scripts (source it): the carried binaries unpacked into /tmp/kb, GPU
# memory and busy % sampled into smi.csv (with device.txt beside it, in the logs), and stages with their own time limits, each
# logging to $LOGS/<name>.log and appending its exit status to $OUT/stages.txt. At most 8 files
# come back from $OUT, so `finish` packs the stage logs into $OUT/logs.tgz.
#   unpack DIR; sample_gpu; stage NAME LIMIT_S CMD...; finish; left (seconds of BUDGET)
set -uo pipefail
OUT=${OUT:-/tmp/kindling-out}
BUDGET=${BUDGET:-570}
START=$(date +%s)
LOGS=${LOGS:-/tmp/kindling-logs}
mkdir -p "$OUT" "$LOGS" /tmp/kb
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}

unpack() {
  for f in "$1"/*.gz; do gunzip -c "$f" > "/tmp/kb/$(basename "$f" .gz)"; done
  chmod +x /tmp/kb/*
}

sample_gpu() {
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$LOGS/device.txt"
  nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu --format=csv,noheader -lms 200 > "$LOGS/smi.csv" 2>/dev/null &
  SMI=$!
}

stop_sampling() { kill "${SMI:-}" 2>/dev/null; }

finish() {
  stop_sampling
  tar czf "$OUT/logs.tgz" -C "$LOGS" . 2>/dev/null
}

left() { echo $((BUDGET - ($(date +%s) - START))); }

stage() {
  local name=$1 limit=$2; shift 2
  echo "== $name ($(date +%T), $(left) s left)"
  timeout "$limit" "$@" > "$LOGS/$name.log" 2>&1; local rc=$?
  tail -"${STAGE_TAIL:-4}" "$LOGS/$name.log"; echo "$name exit: $rc ($(date +%T))" | tee -a "$OUT/stages.txt"; return $rc
}
