#!/bin/sh
# Installs the Debian packages Ringside needs to build, test and run the demo.
# Idempotent and quiet when everything is present.  Usage: scripts/install-deps.sh [build|test]
#   build  compilers and libraries (enough for `make demo`)
#   test   build + redis, chromium, node tooling, fuzz/sanitizer toolchain (for `make check`)
set -eu

want=${1:-test}

BUILD_PKGS="build-essential cmake pkg-config libev-dev libwslay-dev libhiredis-dev libsodium-dev
libjwt-dev libjansson-dev libmsgpack-dev zlib1g-dev libssl-dev"
TEST_PKGS="libcmocka-dev redis-server redis-sentinel clang llvm python3 python3-websockets
chromium nodejs libck-dev procps iproute2 curl ca-certificates"

case "$want" in
build) pkgs=$BUILD_PKGS ;;
test) pkgs="$BUILD_PKGS $TEST_PKGS" ;;
*) echo "install-deps.sh: unknown profile '$want' (use build or test)" >&2; exit 2 ;;
esac

missing=""
for p in $pkgs; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing="$missing $p"
    fi
done

# nodesource's nodejs bundles npm and conflicts with Debian's npm package.
if [ "$want" = test ] && ! command -v npm >/dev/null 2>&1; then
    missing="$missing npm"
fi

if [ -n "$missing" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        SUDO=sudo
    else
        SUDO=
    fi
    echo "install-deps: installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# Node tooling for the browser tests, installed into the tree (never a browser download).
if [ "$want" = test ]; then
    here=$(cd "$(dirname "$0")/.." && pwd)
    if [ ! -d "$here/tests/e2e/node_modules/playwright-core" ] || [ ! -d "$here/tests/e2e/node_modules/ws" ]; then
        (cd "$here/tests/e2e" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --silent --no-audit --no-fund >/dev/null)
    fi
fi
