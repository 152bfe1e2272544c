# Shared helpers for the conformance scripts: a fresh hsmlink deployment on a
# free loopback port, its server started and stopped with the script.
#
# Inputs (environment): HSMLINK_SERVER (hsmlink-server binary), HSMLINK_MODULE
# (libhsmlink_pkcs11.so). Defaults: target/release of this checkout.
set -euo pipefail
trap 'echo "not ok - line $LINENO failed: $BASH_COMMAND" >&2' ERR

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HSMLINK_SERVER="${HSMLINK_SERVER:-$ROOT/target/release/hsmlink-server}"
HSMLINK_MODULE="${HSMLINK_MODULE:-$ROOT/target/release/libhsmlink_pkcs11.so}"
for f in "$HSMLINK_SERVER" "$HSMLINK_MODULE"; do
    [ -e "$f" ] || { echo "missing $f: run cargo build --release --workspace" >&2; exit 1; }
done

WORK="$(mktemp -d)"
SERVER_PID=""
# Processes a script started besides the server (nginx, ...): stopped first.
CLEANUP_PIDS=()
cleanup() {
    local pid
    for pid in "${CLEANUP_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    if [ -n "$SERVER_PID" ]; then kill -TERM "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# start_deployment: init into $WORK/deploy and run the server; exports HSMLINK_CONF.
# SECURE_TEMPLATES=relaxed (set by scripts about a client's own default
# templates) puts the slot's partition under the relaxed secure-template rules.
start_deployment() {
    local port; port="$(free_port)"
    # The admin API gets a free port of its own (init's default, the tenant
    # port + 1, may be in use by another test's connection).
    local admin_port; admin_port="$(free_port)"
    while [ "$admin_port" = "$port" ]; do admin_port="$(free_port)"; done
    "$HSMLINK_SERVER" init --dir "$WORK/deploy" --listen "127.0.0.1:$port" \
        --admin-listen "127.0.0.1:$admin_port" >/dev/null
    if [ -n "${SECURE_TEMPLATES:-}" ]; then
        sed -i "s/^driver = \"soft\"/&\nsecure_templates = \"$SECURE_TEMPLATES\"/" "$WORK/deploy/server.toml"
    fi
    "$HSMLINK_SERVER" run --config "$WORK/deploy/server.toml" >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    export HSMLINK_CONF="$WORK/deploy/client.toml"
    for _ in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; echo "server died" >&2; exit 1; }
        sleep 0.1
    done
    cat "$WORK/server.log" >&2; echo "server did not listen on $port" >&2; exit 1
}

# expect NAME PATTERN FILE: FILE must contain PATTERN (extended regex).
expect() {
    if grep -Eq -- "$2" "$3"; then echo "ok - $1"; else
        echo "not ok - $1: no /$2/ in:" >&2; cat "$3" >&2; exit 1
    fi
}

# check DESCRIPTION COMMAND...: run COMMAND quietly; fail the script unless it succeeds.
check() {
    local what="$1"; shift
    if "$@" >/dev/null 2>&1; then echo "ok - $what"; else
        echo "not ok - $what: $*" >&2; exit 1
    fi
}

# init_token LABEL SO_PIN USER_PIN: the tenant's first steps with pkcs11-tool
# on slot 0 (C_InitToken, C_InitPIN by the SO, then C_SetPIN by the user, as
# require_user_pin_change asks). Needs a started deployment.
init_token() {
    local p11="pkcs11-tool --module $HSMLINK_MODULE"
    $p11 --init-token --label "$1" --so-pin "$2" >"$WORK/init-token.txt" 2>&1 \
        || { cat "$WORK/init-token.txt" >&2; echo "not ok - C_InitToken" >&2; exit 1; }
    $p11 --init-pin --so-pin "$2" --pin "first-$3" >"$WORK/init-pin.txt" 2>&1 \
        || { cat "$WORK/init-pin.txt" >&2; echo "not ok - C_InitPIN" >&2; exit 1; }
    $p11 --change-pin --pin "first-$3" --new-pin "$3" >"$WORK/set-pin.txt" 2>&1 \
        || { cat "$WORK/set-pin.txt" >&2; echo "not ok - C_SetPIN" >&2; exit 1; }
}

# engine_conf FILE: an openssl.cnf loading libp11's PKCS#11 engine (Debian's
# libengine-pkcs11-openssl) with the module, for OPENSSL_CONF. init = 1: the
# engine is initialised when the file is read, which programs that only call
# ENGINE_by_id (nginx) need.
engine_conf() {
    local engine
    engine="$(openssl version -e | sed -E 's/^ENGINESDIR: "(.*)"$/\1/')/pkcs11.so"
    [ -e "$engine" ] || { echo "$engine missing: apt-get install libengine-pkcs11-openssl" >&2; exit 1; }
    cat >"$1" <<CNF
openssl_conf = openssl_init

[openssl_init]
engines = engine_section

[engine_section]
pkcs11 = pkcs11_section

[pkcs11_section]
engine_id = pkcs11
dynamic_path = $engine
MODULE_PATH = $HSMLINK_MODULE
init = 1
CNF
}
