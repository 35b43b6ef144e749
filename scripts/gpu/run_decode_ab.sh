#!/usr/bin/env bash
# One device call for decoding work: the CUDA tests, the parity fixtures (cached decoding
# included), 8B batch-1 decoding fused (default), with the fused products but the attention as
# separate ops (KINDLING_DECODE=gemv) and through the separate ops (KINDLING_DECODE=unfused) side
# by side, the kernel profile of the fused decode, then Nsight
# Compute over a window of fused-decode launches.
#   bash scripts/gpu/run_decode_ab.sh .device/bench [ncu-skip] [ncu-count]
# Results: $OUT/ab-decode*.jsonl, $OUT/profile.jsonl, $OUT/ncu.txt, $OUT/stages.txt, $OUT/logs.tgz.
DIR=${1:-.device/bench}
SKIP=${2:-2000}
COUNT=${3:-40}
source "$(dirname "$0")/lib.sh"
unpack "$DIR"
sample_gpu
X=/tmp/kb/xtask
DECODE="$X bench --suite decode --device cuda --shape llama3-8b --model-dir /tmp/kindling-l3-8b"
echo "host tools: $(command -v perf nsys ncu /usr/local/cuda/bin/nsys /usr/local/cuda/bin/ncu | tr '\n' ' ')" | tee -a "$OUT/stages.txt"
stage gk-tests 120 /tmp/kb/cuda --test-threads=1 || true
stage parity 60 $X bench --suite parity --device cuda --out "$OUT/parity.jsonl" || true
stage decode 120 $DECODE --new-tokens 128 --out "$OUT/ab-decode.jsonl"
stage decode-gemv 60 env KINDLING_DECODE=gemv $DECODE --new-tokens 128 --out "$OUT/ab-decode-gemv.jsonl" || true
stage decode-unfused 60 env KINDLING_DECODE=unfused $DECODE --new-tokens 128 --out "$OUT/ab-decode-unfused.jsonl" || true
stage profile-decode 60 $DECODE --new-tokens 32 --profile --out "$OUT/profile.jsonl" || true
NCU=${NCU:-/usr/local/cuda/bin/ncu}
if [ "$(left)" -gt 60 ] && [ -x "$NCU" ]; then
  stage ncu "$(($(left) - 10))" "$NCU" --launch-skip "$SKIP" --launch-count "$COUNT" --section SpeedOfLight --section Occupancy \
    --section LaunchStats $DECODE --new-tokens 3 || true
  cp "$LOGS/ncu.log" "$OUT/ncu.txt"
  grep -E "^  [A-Za-z_]|Duration|Memory Throughput|DRAM Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Registers Per Thread|Grid Size|ERR" \
    "$OUT/ncu.txt" | cut -c1-160 | head -150
fi
finish
cat "$OUT/stages.txt"; cat "$OUT"/ab-decode*.jsonl "$OUT/parity.jsonl" 2>/dev/null
