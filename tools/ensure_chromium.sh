#!/bin/sh
# make test-ui drives Debian's chromium (LABKIT_CHROMIUM points elsewhere).
# Missing: install it with apt-get when root (CI), else say how.
set -eu
chromium="${LABKIT_CHROMIUM:-/usr/bin/chromium}"
[ -x "$chromium" ] && exit 0
if [ -n "${LABKIT_CHROMIUM:-}" ]; then
    echo "LABKIT_CHROMIUM=$chromium is not an executable" >&2
    exit 1
fi
if [ "$(id -u)" != 0 ]; then
    echo "make test-ui needs Debian's chromium: sudo apt-get install chromium" \
         "(or set LABKIT_CHROMIUM=/path/to/chromium)" >&2
    exit 1
fi
echo "installing Debian's chromium (apt-get)"
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
