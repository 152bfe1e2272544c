#!/usr/bin/env bash
# nginx serves HTTPS with its private keys inside hsmlink: an EC and an RSA
# key on the token, named by PKCS#11 URI through libp11's engine
# (ssl_certificate_key "engine:pkcs11:<URI>"), certificates made on the
# token by `openssl req -x509`. Two process models, each with both keys:
# - nginx's default: a master process and one worker. The master loads the
#   keys through the module and forks the worker; every handshake signature
#   is made by the worker, through the module across fork().
# - `master_process off`: one process loads the keys and serves.
# In each, curl completes 200 requests in a row and 100 more 20 at a time,
# every one a new TLS handshake, all 200 OK, for the EC and the RSA key.
# The server's debug log and the audit log show one C_Sign per handshake:
# the script counts them.
source "$(dirname "$0")/lib.sh"
for tool in nginx curl openssl pkcs11-tool; do
    command -v "$tool" >/dev/null || { echo "$tool missing: apt-get install nginx-light curl openssl opensc" >&2; exit 1; }
done

# The server logs every request at debug level (function and CK_RV).
RUST_LOG="info,hsmlink_server=debug" start_deployment
init_token "web token" so-pin-1234 user-pin-1234
P11="pkcs11-tool --module $HSMLINK_MODULE --login --pin user-pin-1234"
$P11 --keypairgen --key-type EC:prime256v1 --id 01 --label web-ec >/dev/null 2>&1
$P11 --keypairgen --key-type rsa:2048 --id 02 --label web-rsa >/dev/null 2>&1

engine_conf "$WORK/openssl.cnf"
export OPENSSL_CONF="$WORK/openssl.cnf"
TOKEN="pkcs11:token=web%20token"
EC_KEY="$TOKEN;object=web-ec;type=private;pin-value=user-pin-1234"
RSA_KEY="$TOKEN;object=web-rsa;type=private;pin-value=user-pin-1234"
for k in ec rsa; do
    uri="$EC_KEY"; [ "$k" = rsa ] && uri="$RSA_KEY"
    openssl req -x509 -engine pkcs11 -keyform engine -key "$uri" -sha256 -subj "/CN=localhost" \
        -addext "subjectAltName=DNS:localhost" -days 2 -out "$WORK/web-$k.pem" >"$WORK/req-$k.txt" 2>&1 \
        || { cat "$WORK/req-$k.txt" >&2; echo "not ok - certificate for the $k key" >&2; exit 1; }
done
echo "ok - certificates signed on the token"

N="$WORK/nginx"
# Workers get only the environment named by `env`; as root, nginx would run
# them as nobody, who cannot read the tenant's key files.
USER_LINE=""; [ "$(id -u)" -eq 0 ] && USER_LINE="user root;"

get() { # PORT CA: one request on a new connection; prints the HTTP status
    curl -sS --max-time 20 --cacert "$2" -o /dev/null -w '%{http_code}\n' "https://localhost:$1/"
}
export -f get
export WORK

signatures() { grep -c 'function="C_Sign" rv=0x0' "$WORK/server.log" || true; }
# The audit log's records of successful C_Sign calls (one per key use).
audited() {
    "$HSMLINK_SERVER" audit export --config "$WORK/deploy/server.toml" >"$WORK/audit.jsonl"
    grep '"op":"C_Sign"' "$WORK/audit.jsonl" | grep -c '"rv_name":"CKR_OK"' || true
}

# serve MODEL: starts nginx with the process model MODEL ("master": the
# default master process and one worker; "single": master_process off),
# drives it with both keys, stops it.
serve() {
    local model="$1" process_lines
    case "$model" in
        master) process_lines="master_process on; worker_processes 1;" ;;
        single) process_lines="master_process off;" ;;
    esac
    local ec_port rsa_port
    ec_port="$(free_port)"
    rsa_port="$(free_port)"
    [ "$ec_port" != "$rsa_port" ] || rsa_port="$(free_port)"
    rm -rf "$N"
    mkdir -p "$N/logs"
    cat >"$N/nginx.conf" <<EOF
$USER_LINE
$process_lines
daemon off;
pid $N/nginx.pid;
error_log $N/logs/error.log notice;
env OPENSSL_CONF;
env HSMLINK_CONF;
events { worker_connections 256; }
http {
    access_log $N/logs/access.log;
    client_body_temp_path $N/body;
    proxy_temp_path $N/proxy;
    fastcgi_temp_path $N/fastcgi;
    uwsgi_temp_path $N/uwsgi;
    scgi_temp_path $N/scgi;
    ssl_protocols TLSv1.2 TLSv1.3;  # nginx 1.22 leaves TLS 1.3 out by default
    ssl_session_cache off;
    ssl_session_tickets off;
    server {
        listen 127.0.0.1:$ec_port ssl;
        server_name localhost;
        ssl_certificate $WORK/web-ec.pem;
        ssl_certificate_key "engine:pkcs11:$EC_KEY";
        location / { return 200 "hello from a key in hsmlink\n"; }
    }
    server {
        listen 127.0.0.1:$rsa_port ssl;
        server_name localhost;
        ssl_certificate $WORK/web-rsa.pem;
        ssl_certificate_key "engine:pkcs11:$RSA_KEY";
        location / { return 200 "hello from a key in hsmlink\n"; }
    }
}
EOF
    nginx -t -e "$N/logs/error.log" -p "$N" -c "$N/nginx.conf" >"$WORK/nginx-t.txt" 2>&1 \
        || { cat "$WORK/nginx-t.txt" >&2; echo "not ok - $model: nginx -t" >&2; exit 1; }
    nginx -e "$N/logs/error.log" -p "$N" -c "$N/nginx.conf" >"$WORK/nginx-$model.out" 2>&1 &
    local nginx_pid=$!
    CLEANUP_PIDS+=("$nginx_pid")

    for _ in $(seq 1 100); do
        get "$ec_port" "$WORK/web-ec.pem" >/dev/null 2>&1 && break
        sleep 0.1
    done
    curl -sS --cacert "$WORK/web-ec.pem" "https://localhost:$ec_port/" >"$WORK/body.txt"
    expect "$model: HTTPS answer with the EC key" 'hello from a key in hsmlink' "$WORK/body.txt"
    curl -sS --cacert "$WORK/web-rsa.pem" "https://localhost:$rsa_port/" >"$WORK/body-rsa.txt"
    expect "$model: HTTPS answer with the RSA key" 'hello from a key in hsmlink' "$WORK/body-rsa.txt"
    local k port
    for k in ec rsa; do
        port="$ec_port"; [ "$k" = rsa ] && port="$rsa_port"
        curl -sSv --cacert "$WORK/web-$k.pem" -o /dev/null "https://localhost:$port/" >"$WORK/$k-13.txt" 2>&1
        expect "$model, $k key: TLS 1.3" 'SSL connection using TLSv1\.3' "$WORK/$k-13.txt"
        curl -sSv --tlsv1.2 --tls-max 1.2 --cacert "$WORK/web-$k.pem" -o /dev/null "https://localhost:$port/" >"$WORK/$k-12.txt" 2>&1
        expect "$model, $k key: TLS 1.2" 'SSL connection using TLSv1\.2 / ECDHE-(ECDSA|RSA)' "$WORK/$k-12.txt"
    done

    local before audited_before ok signed audited_signed
    before="$(signatures)"
    audited_before="$(audited)"
    for k in ec rsa; do
        port="$ec_port"; [ "$k" = rsa ] && port="$rsa_port"
        for _ in $(seq 1 200); do get "$port" "$WORK/web-$k.pem"; done >"$WORK/serial.txt" 2>&1
        ok="$(grep -cx 200 "$WORK/serial.txt" || true)"
        [ "$ok" -eq 200 ] || { sort "$WORK/serial.txt" | uniq -c >&2; echo "not ok - $model, $k key: $ok of 200 requests in a row answered 200" >&2; exit 1; }
        echo "ok - $model, $k key: 200 requests in a row, all 200 OK"
        export port k
        seq 1 100 | xargs -P 20 -I{} bash -c 'get "$port" "$WORK/web-$k.pem"' >"$WORK/parallel.txt" 2>&1 || true
        ok="$(grep -cx 200 "$WORK/parallel.txt" || true)"
        [ "$ok" -eq 100 ] || { sort "$WORK/parallel.txt" | uniq -c >&2; echo "not ok - $model, $k key: $ok of 100 parallel requests answered 200" >&2; exit 1; }
        echo "ok - $model, $k key: 100 requests 20 at a time, all 200 OK"
    done

    # One signature per handshake: 600 handshakes, no session resumption
    # (every curl is a new process; nginx keeps no session cache nor tickets).
    signed=$(( $(signatures) - before ))
    [ "$signed" -eq 600 ] || { echo "not ok - $model: the server made $signed signatures for 600 handshakes" >&2; exit 1; }
    echo "ok - $model: the server's log shows $signed signatures for 600 handshakes"
    audited_signed=$(( $(audited) - audited_before ))
    [ "$audited_signed" -eq 600 ] || { echo "not ok - $model: the audit log has $audited_signed signatures for 600 handshakes" >&2; exit 1; }
    grep '"op":"C_Sign"' "$WORK/audit.jsonl" | tail -n1 >"$WORK/last-sign.json"
    expect "$model: an audited signature names the key, mechanism, source and result" \
        '"key":[0-9]+.*"mechanism_name":"CKM_(ECDSA|RSA_PKCS[A-Z_]*)".*"source":"127\.0\.0\.1:' "$WORK/last-sign.json"

    if [ "$model" = master ]; then
        # One worker, forked by the master, made every signature above.
        local workers
        workers="$(grep -Ec 'start worker process [0-9]+' "$N/logs/error.log" || true)"
        [ "$workers" -eq 1 ] || { cat "$N/logs/error.log" >&2; echo "not ok - $workers workers started, expected 1" >&2; exit 1; }
        [ -n "$(pgrep -P "$nginx_pid" || true)" ] || { echo "not ok - the master has no worker child" >&2; exit 1; }
        echo "ok - master: one worker process, a child of the master"
    fi
    if grep -Eq '\[(alert|crit|emerg)\]' "$N/logs/error.log"; then
        cat "$N/logs/error.log" >&2; echo "not ok - $model: nginx logged errors" >&2; exit 1
    fi
    kill -TERM "$nginx_pid"
    wait "$nginx_pid" 2>/dev/null || true
    echo "ok - $model: no alerts in nginx's log; stopped"
}

serve master
serve single
echo "nginx: all ok"
