#!/bin/sh
# Make sure a Debian package's binary is there: `ensure_apt.sh BINARY PACKAGE [ENVVAR]`.
# make test-ui needs chromium, make test-redis7 needs redis-server (7.0 on Debian 12).
# Missing: install it with apt-get when root (CI), else say how. ENVVAR, when set
# in the environment, points at another binary instead.
set -eu
binary="$1"; package="$2"; var="${3:-}"
if [ -n "$var" ]; then
    override=$(printenv "$var" || true)
    if [ -n "$override" ]; then
        [ -x "$override" ] && exit 0
        echo "$var=$override is not an executable" >&2
        exit 1
    fi
fi
[ -x "$binary" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    hint=""
    [ -n "$var" ] && hint=" (or set $var=/path/to/$(basename "$binary"))"
    echo "this needs Debian's $package: sudo apt-get install $package$hint" >&2
    exit 1
fi
echo "installing Debian's $package (apt-get)"
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y "$package"
