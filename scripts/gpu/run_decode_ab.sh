#!/usr/bin/env bash
# One device call for decoding work: the CUDA tests (TESTS: a name filter, default all), the
# parity fixtures (cached decoding included), 8B batch-1 decoding by default and under each of
# VARIANTS (environment assignments, e.g. "KINDLING_GEMV_ROWS=1 KINDLING_DECODE=unfused"), side
# by side (`+` joins several assignments of one variant), the Python anchor's decode when ANCHORS
# is a carried anchor folder, the kernel profile of the default decode, then Nsight Compute over
# a window of its launches while time is left. GEMV=1 adds `bench --suite gemv --profile` (one
# block's fused products under each GEMV tuning, with their device times) before the decodes
# and TEST_ENV (assignments joined by `+`) a second run of the tests under that environment.
# NCU_GEMV (items `tuning[+VAR=value…]`, the tuning as `bench --suite gemv --tunings` takes it)
# runs Nsight Compute over the gemv suite's first four fused launches (one per product) under
# each, into $OUT/ncu-gemv.txt; PARITY=0 and PROFILE=0 leave out the parity check and the
# profiled decode; DECODE_ARGS are added to every decode (e.g. --compare-steps).
#   VARIANTS="..." ANCHORS=.device/anchors bash scripts/gpu/run_decode_ab.sh .device/bench [ncu-skip] [ncu-count]
# Results: $OUT/ab-decode.jsonl (the default's line, then each variant's name and line), $OUT/gemv.jsonl, $OUT/anchor.jsonl, $OUT/profile.jsonl,
# $OUT/profile-prefill.jsonl (the prompt alone),
# $OUT/ncu.txt, $OUT/stages.txt, $OUT/logs.tgz.
DIR=${1:-.device/bench}
SKIP=${2:-2000}
COUNT=${3:-40}
source "$(dirname "$0")/lib.sh"
unpack "$DIR"
sample_gpu
X=/tmp/kb/xtask
DECODE="$X bench --suite decode --device cuda --shape llama3-8b --model-dir /tmp/kindling-l3-8b ${DECODE_ARGS:-}"
echo "host tools: $(command -v perf nsys ncu /usr/local/cuda/bin/nsys /usr/local/cuda/bin/ncu | tr '\n' ' ')" | tee -a "$OUT/stages.txt"
stage gk-tests 180 /tmp/kb/cuda ${TESTS:-} --test-threads=1 || true
if [ -n "${TEST_ENV:-}" ]; then
  stage gk-tests-env 180 env ${TEST_ENV//+/ } /tmp/kb/cuda ${TESTS:-} --test-threads=1 || true
fi
i=0
for t in ${NCU_GEMV:-}; do
  i=$((i + 1))
  tuning=${t%%+*}; assignments=${t#"$tuning"}
  stage "ncu-gemv-$i" 60 env ${assignments//+/ } /usr/local/cuda/bin/ncu --kernel-name regex:nf4_gemv_fused --launch-count 4 \
    --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
    $X bench --suite gemv --device cuda --shape llama3-8b --steps 1 --tunings "$tuning" || true
  { echo "== $t"; grep -E "nf4_gemv_fused|Duration|DRAM Throughput|Memory Throughput|Achieved Occupancy|Theoretical Occupancy|Registers Per Thread|Block Limit|Stall|Warp Cycles" "$LOGS/ncu-gemv-$i.log"; } >> "$OUT/ncu-gemv.txt"
done
if [ "${GEMV:-0}" = 1 ]; then
  stage gemv 150 $X bench --suite gemv --device cuda --shape llama3-8b --profile ${TUNINGS:+--tunings "$TUNINGS"} --out "$OUT/gemv.jsonl" || true
fi
if [ "${PARITY:-1}" = 1 ]; then stage parity 60 $X bench --suite parity --device cuda --out "$OUT/parity.jsonl" || true; fi
stage decode 150 $DECODE --new-tokens 128 --out "$OUT/ab-decode.jsonl"
i=0
for v in ${VARIANTS-KINDLING_DECODE=gemv KINDLING_DECODE=unfused}; do
  i=$((i + 1))
  echo "{\"variant\": \"$v\"}" >> "$OUT/ab-decode.jsonl"
  stage "decode-v$i" 60 env ${v//+/ } $DECODE --new-tokens 128 --out "$OUT/ab-decode.jsonl" || true
done
if [ -d "${ANCHORS:-}/site" ] && [ "$(left)" -gt 100 ]; then
  stage anchor 120 env PYTHONPATH=$PWD/$ANCHORS/site bash "$ANCHORS/run_all.sh" "$OUT" decode || true
fi
if [ "${PROFILE:-1}" = 1 ]; then
  stage profile-decode 60 $DECODE --new-tokens 32 --profile --out "$OUT/profile.jsonl" || true
  # One new token: the prompt's processing alone (its launches, kernels and wall time).
  stage profile-prefill 60 $DECODE --new-tokens 1 --profile --out "$OUT/profile-prefill.jsonl" || true
fi
NCU=${NCU:-/usr/local/cuda/bin/ncu}
if [ "$COUNT" -gt 0 ] && [ "$(left)" -gt 60 ] && [ -x "$NCU" ]; then
  stage ncu "$(($(left) - 10))" "$NCU" --launch-skip "$SKIP" --launch-count "$COUNT" --section SpeedOfLight --section Occupancy \
    --section LaunchStats $DECODE --new-tokens 3 || true
  cp "$LOGS/ncu.log" "$OUT/ncu.txt"
  grep -E "^  [A-Za-z_]|Duration|Memory Throughput|DRAM Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Registers Per Thread|Grid Size|ERR" \
    "$OUT/ncu.txt" | cut -c1-160 | head -150
fi
finish
cat "$OUT/stages.txt"; cat "$OUT/ncu-gemv.txt" 2>/dev/null; cat "$OUT"/ab-decode*.jsonl "$OUT/anchor.jsonl" "$OUT/gemv.jsonl" "$OUT/parity.jsonl" 2>/dev/null
