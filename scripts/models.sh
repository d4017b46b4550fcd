#!/usr/bin/env bash
# Builds the vision models with the model kit (tools/vigil_kit) from the
# weights scripts/setup.sh fetched:
#   models/efficientnet-lite0.onnx  real ImageNet weights, checked on a cat photo
#   models/efficientnet-lite0-wide.onnx  the same network with block 11's pooled
#                                   expansion beside the head ([1, 1952, 7, 7]):
#                                   the demo model's encoder
#   models/nfnet-f0.onnx            dm_nfnet_f0 topology, random weights
#   models/resampler.onnx           Perceiver Resampler, random init
#   models/xattn-smollm2-random.gguf  4 gated cross-attention blocks for
#                                   SmolLM2, random (seed 0, gates tanh(0.1)),
#                                   matrices in Q8_0
# each with a .json of metadata beside it. The kit runs in a virtualenv;
# results are cached by the hash of the kit's source, so a fresh clone with
# an unchanged kit copies them instead of exporting again.
#
#   scripts/models.sh             build what is missing
#   scripts/models.sh fixtures    also rewrite tests/fixtures/vision (golden outputs)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cache=${VIGIL_CACHE:-$HOME/.cache/vigil}
models=$here/models
photos=$here/data/photos

step() { printf '==> %s\n' "$*" >&2; }
die() { printf 'models: error: %s\n' "$*" >&2; exit 1; }

[ -s "$models/efficientnet-lite0-57934424.pth" ] && [ -s "$photos/chelsea.png" ] \
  || die "weights or photos missing: run scripts/setup.sh first"

req=$here/tools/requirements.txt
venv=$cache/venv-$(sha256sum "$req" | cut -c1-12)
if [ ! -x "$venv/bin/python" ]; then
  step "model kit: virtualenv with $(grep -v '^#' "$req" | xargs)"
  python3 -m venv "$venv.part" || die "python3 -m venv failed (apt-get install python3-venv)"
  "$venv.part/bin/pip" install --quiet --disable-pip-version-check -r "$req" || die "pip install -r $req failed"
  rm -rf "$venv" && mv "$venv.part" "$venv"
fi
py="$venv/bin/python"
if [ "${1:-}" = --python ]; then
  echo "$py"
  exit 0
fi

(cd "$here/tools" && "$py" -m vigil_kit selftest) || die "the model kit's self-test failed"

kit_hash=$(cat "$req" "$here"/tools/vigil_kit/*.py | sha256sum | cut -c1-12)
built=$cache/models-$kit_hash
outputs=(efficientnet-lite0.onnx efficientnet-lite0.json efficientnet-lite0-wide.onnx efficientnet-lite0-wide.json
  nfnet-f0.onnx nfnet-f0.json resampler.onnx resampler.json
  xattn-smollm2-random.gguf)
lm=$models/smollm2-135m-instruct-q4_1.gguf
[ -s "$lm" ] || die "$lm missing: run scripts/setup.sh first"
if [ ! -s "$built/xattn-smollm2-random.gguf" ]; then
  step "model kit: exporting ${outputs[*]} (kit $kit_hash)"
  rm -rf "$built.part" && mkdir -p "$built.part"
  (cd "$here/tools" && "$py" -m vigil_kit effnet --weights "$models/efficientnet-lite0-57934424.pth" --photos "$photos" --out "$built.part") \
    || die "EfficientNet-Lite0 export failed"
  (cd "$here/tools" && "$py" -m vigil_kit nfnet --out "$built.part") || die "NFNet-F0 export failed"
  (cd "$here/tools" && "$py" -m vigil_kit resampler --encoder-meta "$built.part/efficientnet-lite0.json" --out "$built.part") \
    || die "resampler export failed"
  (cd "$here/tools" && "$py" -m vigil_kit random-adapter --lm "$lm" --type q8_0 --out "$built.part/xattn-smollm2-random.gguf") \
    || die "random adapter for SmolLM2 failed"
  rm -rf "$built" && mv "$built.part" "$built"
fi
for name in "${outputs[@]}"; do
  if ! cmp -s "$built/$name" "$models/$name"; then
    cp "$built/$name" "$models/$name"
  fi
done
step "models ready: ${outputs[*]} in models/"

if [ "${1:-}" = fixtures ]; then
  step "writing golden fixtures to tests/fixtures/vision"
  (cd "$here/tools" && "$py" -m vigil_kit fixtures --models "$models" --photos "$photos" --out "$here/tests/fixtures/vision") \
    || die "fixture generation failed"
fi
