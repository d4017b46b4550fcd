#!/usr/bin/env bash
# The Debian package for real, on this machine: build it (cargo-deb), then
# install, upgrade, remove and purge it with dpkg, checking after each step
# that files are where README.md says, that the config survives an upgrade
# and a remove, and that purge takes the state with it.
#
#   scripts/check-deb.sh           package the debug build (what `make test`
#                                  built) as versions -1 and -2, and cycle
#   PROFILE=release scripts/...    package target/release instead
#
# Needs root (dpkg). Refuses to touch a vigil package that is already
# installed here: it would be replaced and then purged.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
profile=${PROFILE:-dev}
cargo_deb_version=3.8.0

step() { printf '==> check-deb: %s\n' "$*" >&2; }
fail() { printf 'check-deb: FAILED: %s\n' "$*" >&2; exit 1; }

if [ "$(id -u)" != 0 ]; then
  echo "check-deb: SKIPPED: dpkg -i/-r/-P need root (run as root, as CI does)" >&2
  exit 0
fi
if dpkg-query -W -f='${Status}' vigil 2>/dev/null | grep -q 'installed'; then
  echo "check-deb: SKIPPED: a vigil package is installed on this machine; the check would replace and purge it" >&2
  exit 0
fi
"$here/scripts/install-cargo-deb.sh" "$cargo_deb_version"

tmp=$(mktemp -d)
cleanup() {
  # Never leave the test package behind, whatever failed.
  dpkg -P vigil >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

build() {
  # `--profile dev` packages the debug build CI already has (cargo-deb warns
  # that it is meant for release builds; `make deb` builds those).
  (cd "$here" && cargo deb --no-build --profile "$profile" --fast --deb-version "$1" -o "$tmp/" 2>"$tmp/cargo-deb.log") \
    || { cat "$tmp/cargo-deb.log" >&2; fail "cargo deb failed"; }
}

expect_file() { [ -e "$1" ] || fail "$1 is missing after $2"; }
expect_gone() { [ ! -e "$1" ] || fail "$1 is still there after $2"; }

step "building vigil 0.1.0-1 and 0.1.0-2 from the $profile build"
build 0.1.0-1
build 0.1.0-2
v1=$tmp/vigil_0.1.0-1_amd64.deb
v2=$tmp/vigil_0.1.0-2_amd64.deb

step "dpkg -i (first install)"
dpkg -i "$v1" >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log" >&2; fail "dpkg -i"; }
for f in /usr/bin/vigil /lib/systemd/system/vigil.service /lib/systemd/system/vigil.socket \
  /etc/vigil/vigil.toml /usr/share/vigil/models/smollm2-135m-instruct-q4_1.gguf \
  /usr/share/vigil/models/efficientnet-lite0-wide.onnx /usr/share/vigil/models/demo/xattn-smollm2-demo.gguf \
  /usr/share/vigil/models/demo/resampler-demo.onnx /usr/share/vigil/demo/demo-scenario.avi \
  /usr/share/doc/vigil/README.md /usr/share/doc/vigil/examples/example.toml; do
  expect_file "$f" "install"
done
getent passwd vigil >/dev/null || fail "no vigil user after install"
getent group vigil >/dev/null || fail "no vigil group after install"
[ "$(stat -c '%U:%G %a' /etc/vigil/vigil.toml)" = "root:vigil 640" ] \
  || fail "/etc/vigil/vigil.toml is $(stat -c '%U:%G %a' /etc/vigil/vigil.toml), want root:vigil 640"
dpkg-query -W -f='${Conffiles}\n' vigil | grep -q '/etc/vigil/vigil.toml' || fail "vigil.toml is not a conffile"
# Nothing surprising: neither unit is enabled by the install.
links=$(find /etc/systemd/system -name 'vigil.*' 2>/dev/null)
[ -z "$links" ] || fail "the install enabled units: $links"
# The packaged config is valid and finds every packaged model.
out=$(/usr/bin/vigil check-config /etc/vigil/vigil.toml 2>&1) || fail "vigil check-config: $out"
grep -q 'does not exist' <<<"$out" && fail "the packaged config names a missing file: $out"
# The hardened unit passes systemd's own checks as installed.
verify=$(systemd-analyze verify /lib/systemd/system/vigil.service /lib/systemd/system/vigil.socket 2>&1) || true
[ -z "$verify" ] || fail "systemd-analyze verify on the installed units: $verify"

step "a local edit and some state, then dpkg -i 0.1.0-2 (upgrade)"
echo '# edited by the administrator' >>/etc/vigil/vigil.toml
mkdir -p /var/lib/vigil && echo state >/var/lib/vigil/events.db
dpkg -i "$v2" >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log" >&2; fail "dpkg -i (upgrade)"; }
[ "$(dpkg-query -W -f='${Version}' vigil)" = 0.1.0-2 ] || fail "version after upgrade: $(dpkg-query -W -f='${Version}' vigil)"
grep -q 'edited by the administrator' /etc/vigil/vigil.toml || fail "the upgrade overwrote /etc/vigil/vigil.toml"
expect_gone /etc/vigil/vigil.toml.dpkg-new "upgrade (the package's conffile did not change)"
expect_file /var/lib/vigil/events.db "upgrade"

step "dpkg -r (remove)"
dpkg -r vigil >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log" >&2; fail "dpkg -r"; }
expect_gone /usr/bin/vigil "remove"
expect_gone /lib/systemd/system/vigil.service "remove"
expect_gone /usr/share/vigil/models "remove"
grep -q 'edited by the administrator' /etc/vigil/vigil.toml || fail "remove took the edited config"
expect_file /var/lib/vigil/events.db "remove (state stays until purge)"

step "dpkg -P (purge)"
dpkg -P vigil >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log" >&2; fail "dpkg -P"; }
expect_gone /etc/vigil "purge"
expect_gone /var/lib/vigil "purge"
dpkg-statoverride --list /etc/vigil/vigil.toml >/dev/null && fail "the statoverride survived purge"
dpkg-query -W vigil >/dev/null 2>&1 && fail "dpkg still knows vigil after purge"

echo "check-deb: install, upgrade (config kept), remove (config and state kept), purge (all gone): OK"
