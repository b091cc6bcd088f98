#!/usr/bin/env bash
# Installs Debian's chromium for the real-browser end-to-end tests
# (test/e2e/browser_test.go), pinned to the version they were written
# against. It never fails the build: where it cannot install (not root, no
# apt-get, the pinned version gone from the archive) it prints one line
# saying what and why, and the browser tests skip with a line of their own.
set -uo pipefail

# Debian 12 (bookworm-security) as of December 2026. To move on: run
# `apt-cache policy chromium`, put the candidate here, and run make test.
CHROMIUM_VERSION="148.0.7778.167-1~deb12u1"

installed() { dpkg-query -W -f='${Version}' chromium 2>/dev/null; }
[ "$(installed)" = "$CHROMIUM_VERSION" ] && [ -x /usr/bin/chromium ] && exit 0

skip() { echo "browser tests: chromium $CHROMIUM_VERSION not installed: $*; the TestBrowser* tests will skip" >&2; exit 0; }
[ "$(id -u)" = 0 ] || skip "not root (run: sudo scripts/install-chromium.sh)"
command -v apt-get >/dev/null 2>&1 || skip "no apt-get (not Debian)"
export DEBIAN_FRONTEND=noninteractive
if ! apt-cache show "chromium=$CHROMIUM_VERSION" >/dev/null 2>&1; then
  apt-get update -qq >/dev/null 2>&1 || skip "apt-get update failed"
fi
apt-cache show "chromium=$CHROMIUM_VERSION" >/dev/null 2>&1 ||
  skip "version not in the archive (the candidate is $(apt-cache policy chromium 2>/dev/null | awk '/Candidate/{print $2}'))"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
install() {
  apt-get install -y -qq --no-install-recommends \
    "chromium=$CHROMIUM_VERSION" "chromium-common=$CHROMIUM_VERSION" fonts-liberation >"$log" 2>&1
}
if ! install; then
  # An install that was stopped half-way leaves dpkg asking for this.
  if grep -q 'dpkg --configure -a' "$log"; then
    dpkg --configure -a >>"$log" 2>&1 && install
  fi
fi
[ "$(installed)" = "$CHROMIUM_VERSION" ] || skip "apt-get install failed: $(grep -E '^E:' "$log" | head -1)"
echo "browser tests: installed chromium $CHROMIUM_VERSION" >&2
