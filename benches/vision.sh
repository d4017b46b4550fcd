#!/usr/bin/env bash
# make bench-vision: tract (vigil bench vision) against onnxruntime on the
# same models, same thread count, in the same run. Prints one `name: value`
# line per figure; each ratio is tract time / onnxruntime time.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
vigil=${VIGIL_BIN:-$here/target/release/vigil}
py=${KIT_PYTHON:?set KIT_PYTHON to the model kit virtualenv python (make bench-vision does)}
threads=${THREADS:-2}
runs=${RUNS:-20}
m=$here/models
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

run_both() {  # label, then the arguments both tools take
  "$vigil" bench vision --threads "$threads" --runs "$runs" "$@" >> "$tmp/tract"
  "$py" "$here/benches/vision_ort.py" --threads "$threads" --runs "$runs" "$@" >> "$tmp/ort"
}
run_both --encoder "$m/efficientnet-lite0.onnx" --label effnet_lite0
run_both --encoder "$m/efficientnet-lite0-wide.onnx" --label effnet_lite0_wide  # the demo model's
run_both --encoder "$m/nfnet-f0.onnx" --label nfnet_f0
run_both --resampler "$m/resampler.onnx" --frames 1,4,8

echo "threads: $threads"
awk -F': ' 'NR == FNR { ort[$1] = $2; next }
  { name = $1; sub(/_ms$/, "", name);
    printf "%s: %s\n%s_ort_ms: %s\n%s_ratio: %.2f\n", $1, $2, name, ort[$1], name, $2 / ort[$1] }' \
  "$tmp/ort" "$tmp/tract"
