#!/usr/bin/env bash
# Installs Debian's chromium for the real-browser end-to-end tests
# (test/e2e/browser_test.go), pinned to the version they were written
# against; without root or apt-get it says why and the TestBrowser* tests
# skip (scripts/install-pinned-deb.sh).
set -uo pipefail

# Debian 12 (bookworm-security) as of December 2026. To move on: run
# `apt-cache policy chromium`, put the candidate here, and run make test.
CHROMIUM_VERSION="148.0.7778.167-1~deb12u1"

exec "$(dirname "$0")/install-pinned-deb.sh" "browser tests" chromium "$CHROMIUM_VERSION" \
  "chromium-common=$CHROMIUM_VERSION" fonts-liberation
