#!/usr/bin/env bash
# Installs one Debian package at a pinned version for the tests that need
# a real program (chromium for the browser tests, postfix for the mail
# test), the one way both are installed. It never fails the build: where
# it cannot install (not root, no apt-get, the pinned version gone from
# the archive) it prints one line saying what and why, and the tests that
# need the package skip with a line of their own.
#
# Usage: install-pinned-deb.sh LABEL PACKAGE VERSION [EXTRA_PACKAGE...]
#   LABEL starts every line it prints ("browser tests", "postfix test").
#   EXTRA_PACKAGE may carry its own "=version".
# DEBCONF, when set, is fed to debconf-set-selections first.
set -uo pipefail

label=$1 pkg=$2 version=$3
shift 3

installed() { dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null; }
[ "$(installed)" = "$version" ] && exit 0

skip() { echo "$label: $pkg $version not installed: $*; the tests that need it will skip" >&2; exit 0; }
[ "$(id -u)" = 0 ] || skip "not root (run the install script with sudo)"
command -v apt-get >/dev/null 2>&1 || skip "no apt-get (not Debian)"
export DEBIAN_FRONTEND=noninteractive
if ! apt-cache show "$pkg=$version" >/dev/null 2>&1; then
  apt-get update -qq >/dev/null 2>&1 || skip "apt-get update failed"
fi
apt-cache show "$pkg=$version" >/dev/null 2>&1 ||
  skip "version not in the archive (the candidate is $(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate/{print $2}'))"
if [ -n "${DEBCONF:-}" ]; then
  echo "$DEBCONF" | debconf-set-selections
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
install() {
  apt-get install -y -qq --no-install-recommends "$pkg=$version" "$@" >"$log" 2>&1
}
if ! install "$@"; then
  # An install that was stopped half-way leaves dpkg asking for this.
  if grep -q 'dpkg --configure -a' "$log"; then
    dpkg --configure -a >>"$log" 2>&1 && install "$@"
  fi
fi
[ "$(installed)" = "$version" ] || skip "apt-get install failed: $(grep -E '^E:' "$log" | head -1)"
echo "$label: installed $pkg $version" >&2
