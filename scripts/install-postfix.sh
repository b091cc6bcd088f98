#!/usr/bin/env bash
# Installs Debian's postfix for the end-to-end test that has a real MTA
# deliver mail to kontakt (test/e2e/mail_postfix_test.go), pinned to the
# version it was written against. The package's own instance is not
# configured and not started: the test runs its own, from a temporary
# directory. Without root or apt-get it says why and
# TestMailThroughPostfix skips (scripts/install-pinned-deb.sh).
set -uo pipefail

# Debian 12 (bookworm) as of December 2026. To move on: run
# `apt-cache policy postfix`, put the candidate here, and run the test.
POSTFIX_VERSION="3.7.11-0+deb12u1"

# No system mail configuration: the package installs its programs, and
# the machine's own mail (if any) is left as it was.
DEBCONF="postfix postfix/main_mailer_type select No configuration" \
  exec "$(dirname "$0")/install-pinned-deb.sh" "postfix test" postfix "$POSTFIX_VERSION"
