#!/usr/bin/env bash
# Builds hsmlink, writes a local deployment (CA, certificates, server.toml,
# client.toml) into ./deploy, starts hsmlink-server on it in the background
# and shows OpenSC's pkcs11-tool using the module through it.
#
#   HSMLINK_DEPLOY_DIR  where the deployment goes (default ./deploy)
#   HSMLINK_LISTEN      server address (default 127.0.0.1:7700)
#   HSMLINK_SKIP_BUILD  set to 1 to use an existing build
#   HSMLINK_BIN_DIR     where the build is (default target/release)
#
# Stop the server with: kill "$(cat deploy/server.pid)"
set -euo pipefail
cd "$(dirname "$0")"
ROOT="$PWD"
DEPLOY="${HSMLINK_DEPLOY_DIR:-$ROOT/deploy}"
LISTEN="${HSMLINK_LISTEN:-127.0.0.1:7700}"

# 1. What a fresh Debian/Ubuntu machine lacks.
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
missing=()
command -v pkcs11-tool >/dev/null || missing+=(opensc)
command -v cc >/dev/null || missing+=(build-essential)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
if ! command -v cargo >/dev/null; then
    [ -x "$HOME/.cargo/bin/cargo" ] || {
        echo "==> installing Rust (rustup)"
        curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    }
    export PATH="$HOME/.cargo/bin:$PATH"
fi

# 2. Build.
if [ "${HSMLINK_SKIP_BUILD:-0}" != 1 ]; then
    echo "==> building (release)"
    cargo build --release --workspace --locked
fi
BIN_DIR="${HSMLINK_BIN_DIR:-$ROOT/target/release}"
SERVER="$BIN_DIR/hsmlink-server"
MODULE="$BIN_DIR/libhsmlink_pkcs11.so"
# 3. A local deployment, written once.
if [ ! -f "$DEPLOY/server.toml" ]; then
    echo "==> hsmlink-server init --dir $DEPLOY --listen $LISTEN"
    "$SERVER" init --dir "$DEPLOY" --listen "$LISTEN"
fi
# The integrity value of the server just built, which it checks at start
# (software integrity test), kept with the deployment.
"$SERVER" integrity --write --file "$DEPLOY/hsmlink-server.hmac" >/dev/null
grep -q '^integrity_file' "$DEPLOY/server.toml" ||
    sed -i "s|^\[soft\]|[soft]\nintegrity_file = \"$DEPLOY/hsmlink-server.hmac\"|" "$DEPLOY/server.toml"

# 4. The server, unless it already runs.
if [ -f "$DEPLOY/server.pid" ] && kill -0 "$(cat "$DEPLOY/server.pid")" 2>/dev/null; then
    echo "==> hsmlink-server already running (pid $(cat "$DEPLOY/server.pid"))"
else
    echo "==> starting hsmlink-server (log: $DEPLOY/server.log)"
    nohup "$SERVER" run --config "$DEPLOY/server.toml" >"$DEPLOY/server.log" 2>&1 &
    echo $! >"$DEPLOY/server.pid"
    host="${LISTEN%:*}"; port="${LISTEN##*:}"
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null && break
        sleep 0.1
    done
fi

# 5. A real PKCS#11 client through the module.
export HSMLINK_CONF="$DEPLOY/client.toml"
echo "==> HSMLINK_CONF=$HSMLINK_CONF pkcs11-tool --module $MODULE -L -I -M"
pkcs11-tool --module "$MODULE" -L -I -M
echo
echo "hsmlink is running. Point any PKCS#11 application at:"
echo "    module: $MODULE"
echo "    env:    HSMLINK_CONF=$HSMLINK_CONF"
echo "Stop the server with: kill \"\$(cat $DEPLOY/server.pid)\""
