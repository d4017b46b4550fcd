#!/usr/bin/env bash
# The trained demo model (models/demo/): its data, training, export and
# evaluation. See tools/vigil_kit/demo and models/demo/EVAL.md.
#
#   scripts/demo-model.sh train     retrain from scratch: prepare the data,
#                                   train (Debian python3-torch, CPU), export
#                                   into models/demo/ (60-86 min on 2 cores)
#   scripts/demo-model.sh scenario  the demo clips data/demo-scenario.avi and
#                                   data/still-scenario.avi
#   scripts/demo-model.sh subset    the small held-out set `make test` runs
#                                   (target/eval-subset, reference answers in)
#   scripts/demo-model.sh eval      the full held-out set through `vigil eval`
#
# Environment: STEPS (second-stage training steps; the trainer's default when unset), EVAL_EVERY (validation every
# so many stage-2 steps; default 400), THREADS (default 2).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cache=${VIGIL_CACHE:-$HOME/.cache/vigil}
models=$here/models
demo=$models/demo
lm=$models/smollm2-135m-instruct-q4_1.gguf
vigil=${VIGIL_BIN:-$here/target/release/vigil}
[ -x "$vigil" ] || vigil=$here/target/debug/vigil
# The kit runs in tools/: the path must not be relative.
[ -x "$vigil" ] && vigil=$(cd "$(dirname "$vigil")" && pwd)/$(basename "$vigil")
py=$("$here/scripts/models.sh" --python)

step() { printf '==> %s\n' "$*" >&2; }
die() { printf 'demo-model: error: %s\n' "$*" >&2; exit 1; }
kit() { (cd "$here/tools" && "$py" -m vigil_kit.demo "$@"); }

[ -s "$lm" ] && [ -s "$models/efficientnet-lite0-wide.onnx" ] || die "models missing: run make models first"

# Everything the held-out data depends on: the generator and the footage.
data_hash() {
  cat "$here"/tools/vigil_kit/demo/{sources,scenes,build}.py "$here/tools/vigil_kit/preprocess.py" | sha256sum | cut -c1-12
}

# heldout NAME PER_FAMILY: a held-out dataset with the Python reference's
# answers, cached by the generator's and the demo model's hashes.
heldout() {
  local name=$1 per_family=$2
  local key; key=$(cat <(data_hash) "$demo/xattn-smollm2-demo.gguf" "$demo/resampler-demo.onnx" "$here/tools/vigil_kit/demo/reference.py" | sha256sum | cut -c1-12)
  local built=$cache/eval-$name-$key
  if [ ! -e "$built/done" ]; then
    [ -x "$vigil" ] || die "$vigil missing: run make release first"
    step "held-out set $name: $per_family questions per family, Python reference answers"
    rm -rf "$built.part"
    kit evalset --data "$here/data" --per-family "$per_family" --out "$built.part"
    kit reference --dataset "$built.part" --models "$models" --lm "$lm" \
      --adapter "$demo/xattn-smollm2-demo.gguf" --resampler "$demo/resampler-demo.onnx" --vigil "$vigil"
    # An empty marker: tested with -e.
    touch "$built.part/done"
    rm -rf "$built" && mv "$built.part" "$built"
  fi
  rm -rf "$here/target/eval-$name"
  mkdir -p "$here/target"
  cp -r "$built" "$here/target/eval-$name"
}

case "${1:-}" in
  train)
    if ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then
      [ "$(id -u)" = 0 ] || die "training needs Debian's python3-torch: sudo apt-get install python3-torch"
      step "apt: installing python3-torch (CPU PyTorch for training)"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch >/dev/null \
        || die "apt-get install python3-torch failed"
    fi
    # Debian's torch calls whatever provides libblas.so.3; the reference BLAS
    # is ~15x slower than OpenBLAS here.
    if ! update-alternatives --query libblas.so.3-x86_64-linux-gnu 2>/dev/null | grep -q '^Value: .*openblas'; then
      [ "$(id -u)" = 0 ] || die "training needs OpenBLAS as libblas.so.3: sudo apt-get install libopenblas0-pthread"
      step "apt: installing libopenblas0-pthread (fast fp32 matmuls for torch)"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenblas0-pthread >/dev/null \
        || die "apt-get install libopenblas0-pthread failed"
    fi
    [ -x "$vigil" ] || die "$vigil missing: run make release first"
    prep=$cache/demo-prep-$(data_hash)
    if [ ! -s "$prep/train_items.json" ]; then
      step "preparing the training data in $prep"
      rm -rf "$prep.part"
      kit prepare --data "$here/data" --models "$models" --lm "$lm" --vigil "$vigil" --out "$prep.part"
      rm -rf "$prep" && mv "$prep.part" "$prep"
    fi
    if [ ! -s "$prep/train_objects.json" ]; then
      step "labelling every prepared frame with its objects"
      kit labels --data "$here/data" --prep "$prep"
    fi
    # Two processes, stage 1 saved between them: stage 2 then starts from
    # its own seeds (episode sampler, torch's draws) whatever stage 1 drew,
    # so that it can be rerun from the saved stage 1 alone and give the same
    # bytes; the committed model was made this way, and `make train`
    # reproduces its files exactly on the host kind that made them (EVAL.md).
    train_dir=$here/target/train
    rm -rf "$train_dir" && mkdir -p "$train_dir"
    trainer() {
      (cd "$here/tools" && OPENBLAS_NUM_THREADS=${THREADS:-2} /usr/bin/python3 -m vigil_kit.demo.train --prep "$prep" \
        --stage1 "$train_dir/stage1.pt" --threads "${THREADS:-2}" --vigil "$vigil" --lm "$lm" "$@") 2>&1 \
        | tee -a "$train_dir/train.log"
    }
    step "training stage 1 (the resampler on the objects)"
    trainer --stage1-only
    step "training stage 2 (the blocks on the answers${STEPS:+, $STEPS steps})"
    trainer ${STEPS:+--steps "$STEPS"} --eval-every "${EVAL_EVERY:-400}" --out "$train_dir/weights.npz"
    kit export --weights "$train_dir/weights.npz" --lm "$lm" \
      --encoder-meta "$models/efficientnet-lite0-wide.json" --out "$demo"
    cp "$train_dir/train.log" "$demo/train.log"
    ;;
  scenario)
    key=$(cat "$here"/tools/vigil_kit/demo/{sources,scenario}.py | sha256sum | cut -c1-12)
    if [ ! -s "$cache/scenario-$key/still-scenario.avi" ]; then
      step "demo scenario clips"
      rm -rf "$cache/scenario-$key.part" && mkdir -p "$cache/scenario-$key.part"
      kit scenario --data "$here/data" --out "$cache/scenario-$key.part/demo-scenario.avi"
      rm -rf "$cache/scenario-$key" && mv "$cache/scenario-$key.part" "$cache/scenario-$key"
    fi
    cp "$cache/scenario-$key"/demo-scenario.* "$cache/scenario-$key"/still-scenario.* "$here/data/"
    ;;
  subset) heldout subset 17 ;;
  eval)
    heldout full 100
    "$vigil" eval --dataset "$here/target/eval-full" --threads "${THREADS:-2}"
    ;;
  *) die "usage: scripts/demo-model.sh train|scenario|subset|eval" ;;
esac
