#!/usr/bin/env bash
# Installs Debian's postfix for the end-to-end test that has a real MTA
# deliver mail to kontakt (test/e2e/mail_postfix_test.go), pinned to the
# version it was written against. The package's own instance is not
# configured and not started: the test runs its own, from a temporary
# directory. It never fails the build: where it cannot install (not root,
# no apt-get, the pinned version gone from the archive) it prints one line
# saying what and why, and the test skips with a line of its own.
set -uo pipefail

# Debian 12 (bookworm) as of December 2026. To move on: run
# `apt-cache policy postfix`, put the candidate here, and run the test.
POSTFIX_VERSION="3.7.11-0+deb12u1"

installed() { dpkg-query -W -f='${Version}' postfix 2>/dev/null; }
[ "$(installed)" = "$POSTFIX_VERSION" ] && [ -x /usr/sbin/postfix ] && exit 0

skip() { echo "postfix test: postfix $POSTFIX_VERSION not installed: $*; TestMailThroughPostfix will skip" >&2; exit 0; }
[ "$(id -u)" = 0 ] || skip "not root (run: sudo scripts/install-postfix.sh)"
command -v apt-get >/dev/null 2>&1 || skip "no apt-get (not Debian)"
export DEBIAN_FRONTEND=noninteractive
if ! apt-cache show "postfix=$POSTFIX_VERSION" >/dev/null 2>&1; then
  apt-get update -qq >/dev/null 2>&1 || skip "apt-get update failed"
fi
apt-cache show "postfix=$POSTFIX_VERSION" >/dev/null 2>&1 ||
  skip "version not in the archive (the candidate is $(apt-cache policy postfix 2>/dev/null | awk '/Candidate/{print $2}'))"
# No system mail configuration: the package installs its programs, and
# the machine's own mail (if any) is left as it was.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
log=$(mktemp)
trap 'rm -f "$log"' EXIT
install() {
  apt-get install -y -qq --no-install-recommends "postfix=$POSTFIX_VERSION" >"$log" 2>&1
}
if ! install; then
  # An install that was stopped half-way leaves dpkg asking for this.
  if grep -q 'dpkg --configure -a' "$log"; then
    dpkg --configure -a >>"$log" 2>&1 && install
  fi
fi
[ "$(installed)" = "$POSTFIX_VERSION" ] || skip "apt-get install failed: $(grep -E '^E:' "$log" | head -1)"
echo "postfix test: installed postfix $POSTFIX_VERSION" >&2
