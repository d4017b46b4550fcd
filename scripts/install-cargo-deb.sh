#!/usr/bin/env bash
# Installs cargo-deb (from crates.io) at the given version unless it is
# already there: ~3 min of compiling once.
set -euo pipefail
want=${1:?usage: install-cargo-deb.sh VERSION}
have=$(cargo deb --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
  printf '==> installing cargo-deb %s (cargo install, ~3 min)\n' "$want" >&2
  cargo install --locked --quiet cargo-deb --version "$want" \
    || { echo "install-cargo-deb: cargo install cargo-deb failed" >&2; exit 1; }
fi
