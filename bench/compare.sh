#!/usr/bin/env bash
# One tool, three peers, one run: hsmlink-bench measures the same operations
# against
#   hsmlink  - libhsmlink_pkcs11.so -> mutual TLS (loopback) -> hsmlink-server
#              (built-in software HSM), a fresh `hsmlink-server init` deployment;
#   softhsm  - SoftHSMv2 loaded directly (no network hop);
#   p11kit   - p11-kit's remote client (p11-kit-client.so) -> unix socket ->
#              `p11-kit server` -> that same SoftHSMv2 token: the "network hop"
#              peer comparable to hsmlink's TLS hop;
# and prints a Markdown table of ops/s with the ratio hsmlink / peer, and an
# SVG plot of ops/s and p99 against threads ($OUT/plot.svg).
#
# Usage: bench/compare.sh [--pin]
#   --pin        client and servers on one core: hsmlink-server and the p11-kit
#                server start under `taskset -c 0`, hsmlink-bench runs with
#                --pin 0 (so does PIN_CORE=1)
#
# For hsmlink the tool also counts round trips per operation (the server's
# hsmlink_requests_total from `hsmlink-server admin ... metrics` before and
# after a few single-threaded operations) and the server's resident memory
# per session opened (--server-pid).
#
# Environment (defaults in brackets):
#   DURATION     measured seconds per (op, threads) [5]
#   WARMUP       warm-up seconds, not counted [0.5]
#   THREADS      thread counts, comma-separated [1,16]
#   OPS          operations, comma-separated, or all [all]
#   BIG_THREADS  the "100 concurrent requests" run: sign-sm2 on hsmlink and
#                sign-ecdsa-p256 on every peer with this many threads [100];
#                empty to skip
#   SESSIONS     sessions shared by BIG_THREADS threads in the big run [1000]
#   RUNS         runs per measurement, the median reported [3]
#   GMT          1: hsmlink's GM/T targets at BIG_THREADS threads (sign-sm2,
#                verify-sm2, sm3, sm4-cbc, sm4-ctr) [1]
#   BULK_DURATION  measured seconds of the bulk GM/T runs at BIG_THREADS [10]
#   AUDIT_DURABILITY  hsmlink's [audit] durability: fsync (the server's
#                default: one disk flush per key use, shared by concurrent
#                calls) or os (the record in the OS before the reply) [fsync]
#   SCALING      1: hsmlink's server on 1 core, then 2 (taskset -a -p on the
#                running server), sign-sm2 at BIG_THREADS [1]
#   BENCH_ARGS   more options for every `run`, e.g. "--single-part" or
#                "--chunk 262144 --size 4096,1048576" []
#   PEERS        which peers to measure [hsmlink softhsm p11kit]
#   OUT          directory for results.jsonl, table.md and logs [target/bench]
#   HSMLINK_BENCH, HSMLINK_SERVER, HSMLINK_MODULE  binaries [target/release/...]
#   SOFTHSM_MODULE [/usr/lib/softhsm/libsofthsm2.so]
#   P11KIT_CLIENT  [the p11-kit-client.so found under /usr/lib]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="${HSMLINK_BENCH:-$ROOT/target/release/hsmlink-bench}"
SERVER="${HSMLINK_SERVER:-$ROOT/target/release/hsmlink-server}"
MODULE="${HSMLINK_MODULE:-$ROOT/target/release/libhsmlink_pkcs11.so}"
SOFTHSM="${SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}"
P11KIT_CLIENT="${P11KIT_CLIENT:-$(ls /usr/lib/*/pkcs11/p11-kit-client.so /usr/lib/pkcs11/p11-kit-client.so 2>/dev/null | head -n1 || true)}"
DURATION="${DURATION:-5}"
WARMUP="${WARMUP:-0.5}"
THREADS="${THREADS:-1,16}"
OPS="${OPS:-all}"
BIG_THREADS="${BIG_THREADS-100}"
PEERS="${PEERS:-hsmlink softhsm p11kit}"
BENCH_ARGS="${BENCH_ARGS:-}"
SESSIONS="${SESSIONS:-1000}"
RUNS="${RUNS:-3}"
GMT="${GMT:-1}"
SCALING="${SCALING:-1}"
PIN_CORE="${PIN_CORE:-0}"
[ "${1:-}" = --pin ] && PIN_CORE=1
TASKSET=()
PIN_ARGS=()
if [ "$PIN_CORE" = 1 ]; then
    command -v taskset >/dev/null || { echo "compare.sh: taskset missing (util-linux)" >&2; exit 1; }
    TASKSET=(taskset -c 0)
    PIN_ARGS=(--pin 0)
fi
OUT="${OUT:-$ROOT/target/bench}"

LABEL=bench
SO_PIN=so-pin-8765
FIRST_PIN=first-pin-1234
PIN=user-pin-4321

want() { [[ " $PEERS " == *" $1 "* ]]; }
die() { echo "compare.sh: $*" >&2; exit 1; }

[ -x "$BENCH" ] || die "missing $BENCH: cargo build --release --workspace"
if want hsmlink; then
    for f in "$SERVER" "$MODULE"; do [ -e "$f" ] || die "missing $f: cargo build --release --workspace"; done
    command -v pkcs11-tool >/dev/null || die "pkcs11-tool missing: apt-get install opensc"
fi
if want softhsm || want p11kit; then
    [ -e "$SOFTHSM" ] || die "missing $SOFTHSM: apt-get install softhsm2"
    command -v softhsm2-util >/dev/null || die "softhsm2-util missing: apt-get install softhsm2"
fi
if want p11kit; then
    command -v p11-kit >/dev/null || die "p11-kit missing: apt-get install p11-kit"
    [ -n "$P11KIT_CLIENT" ] && [ -e "$P11KIT_CLIENT" ] || die "p11-kit-client.so missing: apt-get install p11-kit-modules"
fi

mkdir -p "$OUT"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

RESULTS="$OUT/results.jsonl"
: >"$RESULTS"
{
    echo "# hsmlink-bench compare, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "# $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "# duration ${DURATION}s x $RUNS runs (median), warm-up ${WARMUP}s, threads $THREADS, ops $OPS, big run ${BIG_THREADS:-none} threads / $SESSIONS sessions, one core: $PIN_CORE"
    git -C "$ROOT" rev-parse --short HEAD 2>/dev/null | sed 's/^/# checkout at commit /' || true
    for f in "$BENCH" "$SERVER" "$MODULE" "$SOFTHSM" "$P11KIT_CLIENT"; do
        [ -e "$f" ] && echo "# $f ($(date -u -r "$f" +%Y-%m-%dT%H:%MZ))"
    done
} | tee "$OUT/machine.txt"

# bench NAME MODULE [VAR=VALUE...] -- ARGS...: one `run --json` into results.jsonl.
bench() {
    local name="$1" module="$2"; shift 2
    local pin="$PIN" envs=() extra=()
    if [ "$name" = hsmlink ]; then
        pin="${PIN_HSMLINK:-$PIN}"
        extra=(--count-cmd "$COUNT_CMD" --server-pid "$SERVER_PID")
    fi
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    echo "== $name: $*" >&2
    env "${envs[@]}" "$BENCH" run --module "$module" --token-label "$LABEL" --user-pin "$pin" \
        --duration "${BENCH_DURATION:-$DURATION}" --warmup "$WARMUP" --runs "${BENCH_RUNS:-$RUNS}" --peer "$name" --json \
        --no-progress "${PIN_ARGS[@]}" "${extra[@]}" $BENCH_ARGS "$@" | tee -a "$RESULTS" |
        "$BENCH" table - >&2
}

# --- hsmlink: init, server, token set up with pkcs11-tool as a tenant does.
if want hsmlink; then
    port="$(free_port)"
    admin_port="$(free_port)"
    "$SERVER" init --dir "$WORK/hsmlink" --listen "127.0.0.1:$port" \
        --admin-listen "127.0.0.1:$admin_port" >/dev/null
    if [ -n "${AUDIT_DURABILITY:-}" ]; then
        printf '\n[audit]\ndurability = "%s"\n' "$AUDIT_DURABILITY" >>"$WORK/hsmlink/server.toml"
    fi
    "${TASKSET[@]}" "$SERVER" run --config "$WORK/hsmlink/server.toml" >"$OUT/hsmlink-server.log" 2>&1 &
    SERVER_PID=$!
    PIDS+=($SERVER_PID)
    # Every PKCS#11 request the server answers, length queries included.
    COUNT_CMD="$SERVER admin --url https://127.0.0.1:$admin_port --ca $WORK/hsmlink/ca.pem --cert $WORK/hsmlink/admin.pem --key $WORK/hsmlink/admin-key.pem metrics"
    for _ in $(seq 1 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        kill -0 "${PIDS[-1]}" 2>/dev/null || { cat "$OUT/hsmlink-server.log" >&2; die "hsmlink-server died"; }
        sleep 0.1
    done
    HSMLINK_ENV=("HSMLINK_CONF=$WORK/hsmlink/client.toml")
    P11=(env "${HSMLINK_ENV[@]}" pkcs11-tool --module "$MODULE")
    "${P11[@]}" --init-token --label "$LABEL" --so-pin "$SO_PIN" >"$WORK/p11.log" 2>&1 ||
        { cat "$WORK/p11.log" >&2; die "hsmlink: C_InitToken failed"; }
    "${P11[@]}" --init-pin --so-pin "$SO_PIN" --pin "$FIRST_PIN" >"$WORK/p11.log" 2>&1 ||
        { cat "$WORK/p11.log" >&2; die "hsmlink: C_InitPIN failed"; }
    # require_user_pin_change is on by default: the user sets its own PIN.
    "${P11[@]}" -L >"$WORK/p11.log" 2>&1
    if grep -q 'to be changed' "$WORK/p11.log"; then
        "${P11[@]}" --change-pin --pin "$FIRST_PIN" --new-pin "$PIN" >"$WORK/p11.log" 2>&1 ||
            { cat "$WORK/p11.log" >&2; die "hsmlink: C_SetPIN failed"; }
    else
        PIN_HSMLINK="$FIRST_PIN"
    fi
fi

# --- SoftHSMv2: its own token directory.
if want softhsm || want p11kit; then
    mkdir -p "$WORK/softhsm/tokens"
    printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
        "$WORK/softhsm/tokens" >"$WORK/softhsm/softhsm2.conf"
    SOFTHSM_ENV=("SOFTHSM2_CONF=$WORK/softhsm/softhsm2.conf")
    env "${SOFTHSM_ENV[@]}" softhsm2-util --init-token --free --label "$LABEL" \
        --so-pin "$SO_PIN" --pin "$PIN" >/dev/null
fi

# --- p11-kit server exporting that SoftHSMv2 token on a unix socket.
if want p11kit; then
    SOCKET="$WORK/p11kit.sock"
    env "${SOFTHSM_ENV[@]}" "${TASKSET[@]}" p11-kit server --foreground --name "$SOCKET" \
        --provider "$SOFTHSM" "pkcs11:token=$LABEL" >"$OUT/p11kit-server.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 100); do [ -S "$SOCKET" ] && break; sleep 0.1; done
    [ -S "$SOCKET" ] || { cat "$OUT/p11kit-server.log" >&2; die "p11-kit server did not listen"; }
    P11KIT_ENV=("P11_KIT_SERVER_ADDRESS=unix:path=$SOCKET")
fi

run_all() {
    # shellcheck disable=SC2068
    want hsmlink && bench hsmlink "$MODULE" "${HSMLINK_ENV[@]}" -- $@
    want softhsm && bench softhsm "$SOFTHSM" "${SOFTHSM_ENV[@]}" -- $@
    want p11kit && bench p11kit "$P11KIT_CLIENT" "${P11KIT_ENV[@]}" -- $@
    return 0
}

if want hsmlink && [ -n "$SESSIONS" ]; then
    # On the fresh server first: its resident memory growth per session
    # opened ($SESSIONS idle sessions), and the module's in this client.
    BENCH_DURATION=0.2 BENCH_RUNS=1 bench hsmlink "$MODULE" "${HSMLINK_ENV[@]}" -- \
        --op random --threads 1 --sessions "$SESSIONS"
fi
run_all --op "$OPS" --threads "$THREADS"
if [ -n "$BIG_THREADS" ]; then
    if want hsmlink && [ "$GMT" = 1 ]; then
        # GM/T 0028-style targets: SM2 sign/verify, SM3, SM4-CBC/CTR with as
        # many concurrent sessions as threads.
        bench hsmlink "$MODULE" "${HSMLINK_ENV[@]}" -- \
            --op sign-sm2,verify-sm2 --threads "$BIG_THREADS"
        # 100 threads x 1 MiB take seconds per operation: a longer window.
        BENCH_DURATION="${BULK_DURATION:-10}" bench hsmlink "$MODULE" "${HSMLINK_ENV[@]}" -- \
            --op sm3,sm4-cbc,sm4-cbc-decrypt,sm4-ctr --threads "$BIG_THREADS"
    fi
    # Many sessions over many threads: every peer, no error expected.
    run_all --op sign-ecdsa-p256 --threads "$BIG_THREADS" --sessions "$SESSIONS"
    if want hsmlink && [ "$SCALING" = 1 ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
        # 1 vs 2 server cores: the running server's threads re-pinned.
        for cores in 0 0,1; do
            taskset -a -p -c "$cores" "$SERVER_PID" >/dev/null
            name="hsmlink-cpu$cores"
            env "${HSMLINK_ENV[@]}" "$BENCH" run --module "$MODULE" --token-label "$LABEL" \
                --user-pin "${PIN_HSMLINK:-$PIN}" --duration "$DURATION" --warmup "$WARMUP" \
                --runs "$RUNS" --peer "${name/,/+}" --json --no-progress \
                --op sign-sm2 --threads "$BIG_THREADS" | tee -a "$RESULTS" | "$BENCH" table - >&2
        done
    fi
fi

echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/machine.txt"
"$BENCH" table --baseline hsmlink "$RESULTS" | tee "$OUT/table.md"
"$BENCH" plot "$RESULTS" --out "$OUT/plot.svg" --title "hsmlink-bench compare ($(date -u +%Y-%m-%d))"
echo "results: $RESULTS, table: $OUT/table.md, plot: $OUT/plot.svg" >&2
