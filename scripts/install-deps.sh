#!/bin/sh
# Installs the Debian packages Ringside needs to build, test and run the demo.
# Idempotent and quiet when everything is present.  Usage: scripts/install-deps.sh [build|test]
#   build  compilers, libraries and npm (for the xterm.js bundle; enough for the demo)
#   test   build + redis, chromium, node tooling, fuzz/sanitizer toolchain (for `make check`)
set -eu

want=${1:-test}

BUILD_PKGS="build-essential cmake pkg-config libev-dev libwslay-dev libhiredis-dev libsodium-dev
libjwt-dev libjansson-dev libmsgpack-dev zlib1g-dev libssl-dev"
# The demo's health check and terminal client.
DEMO_PKGS="curl python3 python3-websockets"
TEST_PKGS="libcmocka-dev redis-server redis-sentinel clang llvm nginx-light libnginx-mod-nchan python3-msgpack valgrind
chromium nodejs libck-dev procps iproute2 util-linux ca-certificates"

case "$want" in
build) pkgs="$BUILD_PKGS $DEMO_PKGS" ;;
test) pkgs="$BUILD_PKGS $DEMO_PKGS $TEST_PKGS" ;;
*) echo "install-deps.sh: unknown profile '$want' (use build or test)" >&2; exit 2 ;;
esac

missing=""
for p in $pkgs; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing="$missing $p"
    fi
done

# npm fetches the xterm.js bundle at configure time (sidecar/web), so the build profile needs it
# too. nodesource's nodejs bundles npm and conflicts with Debian's npm package.
if ! command -v npm >/dev/null 2>&1; then
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

# npm packages for the browser, JS and manifest tests and the Node binding (koffi: prebuilt, no
# node-gyp), installed into the tree from each package.json's lock file (never a browser
# download: Chromium comes from Debian).
if [ "$want" = test ]; then
    here=$(cd "$(dirname "$0")/.." && pwd)
    for pj in "$here"/tests/*/package.json "$here"/sidecar/web/package.json \
        "$here"/client-sdk/node/package.json; do
        [ -f "$pj" ] || continue
        d=$(dirname "$pj")
        stamp="$d/node_modules/.ringside-installed"
        if [ ! -f "$stamp" ] || [ "$pj" -nt "$stamp" ]; then
            echo "install-deps: npm install in ${d#$here/}"
            (cd "$d" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --silent --no-audit \
                --no-fund --no-progress >/dev/null) && touch "$stamp"
        fi
    done
fi
