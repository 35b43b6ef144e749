#!/usr/bin/env bash
# Nsight Compute on the GPU machine (/usr/local/cuda/bin/ncu): per-kernel speed-of-light and
# occupancy for a window of decode launches (one layer's worth: its 7 NF4 GEMVs and their
# neighbours), so a kernel rewrite starts from what the hardware says, not from a guess.
#   bash scripts/gpu/run_ncu.sh .device/bench [launch-skip] [launch-count]
# The skip lands past the 32-token prompt's prefill in the second decoded token. Results:
# $OUT/ncu.txt (whole report), the main rows printed.
DIR=${1:-.device/bench}
SKIP=${2:-1000}
COUNT=${3:-24}
source "$(dirname "$0")/lib.sh"
unpack "$DIR"
NCU=${NCU:-/usr/local/cuda/bin/ncu}
stage ncu "$(($(left) - 5))" "$NCU" --launch-skip "$SKIP" --launch-count "$COUNT" --section SpeedOfLight --section Occupancy \
  --section LaunchStats /tmp/kb/xtask bench --suite decode --device cuda --shape llama3-8b --model-dir /tmp/kindling-l3-8b \
  --new-tokens 3
cp "$LOGS/ncu.log" "$OUT/ncu.txt"
grep -E "^  [A-Za-z_]|Duration|Memory Throughput|DRAM Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Registers Per Thread|Grid Size|ERR" \
  "$OUT/ncu.txt" | cut -c1-160
finish
