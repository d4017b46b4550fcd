#!/usr/bin/env bash
# Checks the systemd units in packaging/ offline:
#  - `systemd-analyze verify` must print nothing (it exits 0 even on
#    "Failed to parse ... ignoring", so any stderr output is a failure);
#  - `systemd-analyze security` must rate the hardening at most $MAX_EXPOSURE.
# ExecStart names /usr/bin/vigil, which verify wants to exist: the check
# runs on a copy that points at the binary just built.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
binary=${VIGIL_BIN:-$here/target/debug/vigil}
max_exposure=${MAX_EXPOSURE:-2.0}

command -v systemd-analyze >/dev/null || { echo "check-units: systemd-analyze is missing (apt-get install systemd)" >&2; exit 1; }
[ -x "$binary" ] || { echo "check-units: $binary is not built (run cargo build)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
for unit in "$here"/packaging/*.service "$here"/packaging/*.socket; do
  [ -e "$unit" ] || continue
  name=$(basename "$unit")
  sed "s|/usr/bin/vigil|$binary|g" "$unit" > "$tmp/$name"
done
for unit in "$tmp"/*; do
  name=$(basename "$unit")
  out=$(cd "$tmp" && systemd-analyze verify "$name" 2>&1) || true
  if [ -n "$out" ]; then
    echo "check-units: $name: systemd-analyze verify complained:" >&2
    echo "$out" >&2
    status=1
  else
    echo "check-units: $name: verify clean"
  fi
  case "$name" in
    *.service)
      score=$(systemd-analyze security --offline=true "$unit" 2>/dev/null | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
      if [ -z "$score" ]; then
        echo "check-units: $name: no security score" >&2; status=1
      elif awk -v s="$score" -v m="$max_exposure" 'BEGIN { exit !(s > m) }'; then
        echo "check-units: $name: exposure $score is above $max_exposure" >&2; status=1
      else
        echo "check-units: $name: exposure $score (limit $max_exposure)"
      fi
      ;;
  esac
done
exit $status
