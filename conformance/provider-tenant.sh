#!/usr/bin/env bash
# Both sides of a cloud HSM, end to end (issue 7):
#   the provider, with `hsmlink-server admin` over the admin API, creates a
#   tenant, issues its certificate from the tenant's CSR and allocates a
#   partition; the tenant, with pkcs11-tool through the module, initialises
#   the token, sets its PINs, generates a key and signs. The provider has no
#   way in: the API has no login call and its certificate is refused by the
#   data port. Suspend (the tenant gets CKR_TOKEN_NOT_PRESENT, its keys
#   survive), resume, terminate (keys gone); a backup taken before the
#   termination, restored elsewhere with the same root key, cannot decrypt
#   the partition; the audit log is still readable and its chains verify.
# Run by tests/tests/admin.rs (provider_and_tenant_end_to_end).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

D="$WORK/deploy"
PORT="$(free_port)"; APORT="$(free_port)"
"$HSMLINK_SERVER" init --dir "$D" --listen "127.0.0.1:$PORT" --admin-listen "127.0.0.1:$APORT" >/dev/null

# start_server CONFIG PORT LOG: runs a server, waits for its port; sets SERVER_PID.
start_server() {
    "$HSMLINK_SERVER" run --config "$1" >"$3" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return 0; fi
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$3" >&2; echo "not ok - server died" >&2; exit 1; }
        sleep 0.1
    done
    cat "$3" >&2; echo "not ok - server did not listen on $2" >&2; exit 1
}
stop_server() {
    kill -TERM "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
}
start_server "$D/server.toml" "$APORT" "$WORK/server.log"

ADMIN=("$HSMLINK_SERVER" admin --url "https://127.0.0.1:$APORT" --ca "$D/ca.pem"
       --cert "$D/admin.pem" --key "$D/admin-key.pem")
P11=(pkcs11-tool --module "$HSMLINK_MODULE")

# ---- The provider: tenant, certificate (from the tenant's CSR), partition ----
"${ADMIN[@]}" health >"$WORK/health.txt"
expect "admin API answers with the provider-admin certificate" '^status +ok' "$WORK/health.txt"
"${ADMIN[@]}" tenants create acme >"$WORK/t.txt"
expect "provider creates tenant acme" '^name +acme' "$WORK/t.txt"
# The tenant makes its key and CSR; only the public key reaches the provider.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$WORK/acme-key.pem" -subj "/CN=whatever-the-tenant-asks" \
    -out "$WORK/acme.csr" 2>/dev/null
"${ADMIN[@]}" certs issue acme --csr "$WORK/acme.csr" --out "$WORK/acme.pem" >"$WORK/cert.txt"
expect "provider issues acme's certificate from its CSR" '^status +valid' "$WORK/cert.txt"
openssl x509 -in "$WORK/acme.pem" -noout -ext subjectAltName >"$WORK/san.txt"
expect "the certificate names the tenant, whatever the CSR asked" 'URI:hsmlink:tenant:acme' "$WORK/san.txt"
"${ADMIN[@]}" partitions allocate acme >"$WORK/p.txt"
expect "provider allocates a partition for acme" '^name +acme-p0' "$WORK/p.txt"
expect "the new partition's token is not initialised" '^token_initialized +false' "$WORK/p.txt"

sed -e "s#^cert = .*#cert = \"$WORK/acme.pem\"#" -e "s#^key = .*#key = \"$WORK/acme-key.pem\"#" \
    "$D/client.toml" >"$WORK/acme.toml"
export HSMLINK_CONF="$WORK/acme.toml"

# ---- The tenant, with pkcs11-tool through the module ----
"${P11[@]}" -L >"$WORK/slots.txt" 2>&1
expect "acme sees its new slot, uninitialised" 'token state: +uninitialized' "$WORK/slots.txt"
init_token acme-token 'acme-so-secret' 'acme-user-pin'
echo "ok - acme initialises the token and sets its SO and user PINs"
"${P11[@]}" --login --pin acme-user-pin --keypairgen --key-type EC:prime256v1 \
    --label acme-key --id 01 >"$WORK/keygen.txt" 2>&1
expect "acme generates an EC key pair" 'Private Key Object; EC' "$WORK/keygen.txt"
echo "payment 42" >"$WORK/data.txt"
"${P11[@]}" --login --pin acme-user-pin --sign --id 01 -m ECDSA-SHA256 \
    --input-file "$WORK/data.txt" --output-file "$WORK/sig.bin" >/dev/null 2>&1
[ -s "$WORK/sig.bin" ] || { echo "not ok - acme signs with it" >&2; exit 1; }
echo "ok - acme signs with it"
# The compliance report, with acme's own certificate.
"$HSMLINK_SERVER" report --url "https://127.0.0.1:$APORT" --ca "$D/ca.pem" \
    --cert "$WORK/acme.pem" --key "$WORK/acme-key.pem" --json >"$WORK/report.json"
expect "acme fetches its compliance report" '"fingerprint": "hmac-sha256:[0-9a-f]{64}"' "$WORK/report.json"
expect "the report shows the session limits" '"login_idle_timeout_s": 7200' "$WORK/report.json"

# ---- The provider has no way in ----
code() { curl -s -o /dev/null -w '%{http_code}' --cacert "$D/ca.pem" --cert "$1" --key "$2" -X "$3" "https://127.0.0.1:$APORT$4"; }
for path in /v1/partitions/acme-p0/login /v1/partitions/acme-p0/keys /v1/partitions/acme-p0/pin; do
    c="$(code "$D/admin.pem" "$D/admin-key.pem" POST "$path")"
    [ "$c" = 404 ] || { echo "not ok - $path answered $c" >&2; exit 1; }
done
echo "ok - the admin API has no call to log in, set a PIN or use a key (404)"
if ! python3 -c 'import json, sys
paths = json.load(open(sys.argv[1]))["paths"]
# /v1/crypto/* is the JSON crypto API of tenants: provider certificates get 403 (below).
bad = [p for p in paths if not p.startswith("/v1/crypto/")
       and any(w in p.lower() for w in ("login", "pin", "key", "sign", "crypt"))]
sys.exit(1 if bad else 0)' "$ROOT/docs/openapi.json"; then
    echo "not ok - the OpenAPI document names a login or key call" >&2; exit 1
fi
echo "ok - nor does its OpenAPI document"
for path in /v1/crypto/login /v1/crypto/keys /v1/crypto/sign; do
    c="$(code "$D/admin.pem" "$D/admin-key.pem" POST "$path")"
    [ "$c" = 403 ] || { echo "not ok - the crypto API answered $c to the provider on $path" >&2; exit 1; }
done
echo "ok - the tenants' crypto API refuses the provider-admin certificate (403)"
c="$(code "$WORK/acme.pem" "$WORK/acme-key.pem" GET /v1/partitions)"
[ "$c" = 403 ] || { echo "not ok - a tenant certificate may not administer ($c)" >&2; exit 1; }
echo "ok - a tenant certificate may not administer (403)"
sed -e "s#^cert = .*#cert = \"$D/admin.pem\"#" -e "s#^key = .*#key = \"$D/admin-key.pem\"#" \
    "$D/client.toml" >"$WORK/provider.toml"
if HSMLINK_CONF="$WORK/provider.toml" "${P11[@]}" --slot 0 --login --login-type so --so-pin acme-so-secret -O \
    >"$WORK/provider-so.txt" 2>&1; then
    echo "not ok - the provider's certificate logged in as SO" >&2; exit 1
fi
if HSMLINK_CONF="$WORK/provider.toml" "${P11[@]}" --slot 0 --login --pin acme-user-pin -O \
    >"$WORK/provider-user.txt" 2>&1; then
    echo "not ok - the provider's certificate logged in as user" >&2; exit 1
fi
grep -q 'hsmlink-server: connection refused\|TLS handshake failed' "$WORK/server.log"
echo "ok - the data port refuses the provider's admin certificate (SO and user login fail)"

# ---- A backup before anything ends ----
"$HSMLINK_SERVER" backup --config "$D/server.toml" --out "$WORK/before.backup" >"$WORK/backup.txt"
expect "backup written, encrypted" 'encrypted under the root key' "$WORK/backup.txt"
if grep -q 'SQLite format' "$WORK/before.backup"; then echo "not ok - backup in clear" >&2; exit 1; fi

# ---- Suspend, resume ----
"${ADMIN[@]}" partitions suspend acme-p0 >"$WORK/s.txt"
expect "provider suspends acme-p0" '^state +suspended' "$WORK/s.txt"
"${P11[@]}" -L >"$WORK/slots-suspended.txt" 2>&1
expect "acme's slot shows no token while suspended" '\(empty\)' "$WORK/slots-suspended.txt"
if "${P11[@]}" --slot 0 --login --pin acme-user-pin -O >"$WORK/o.txt" 2>&1; then
    echo "not ok - a suspended token served acme" >&2; exit 1
fi
expect "acme's calls on the slot fail with CKR_TOKEN_NOT_PRESENT" 'CKR_TOKEN_NOT_PRESENT|No slot with a token' "$WORK/o.txt"
"${ADMIN[@]}" partitions resume acme-p0 >"$WORK/r.txt"
expect "provider resumes acme-p0" '^state +active' "$WORK/r.txt"
"${P11[@]}" --login --pin acme-user-pin -O >"$WORK/o2.txt" 2>&1
expect "acme's key survived the suspension" 'label: +acme-key' "$WORK/o2.txt"

# ---- Terminate ----
"${ADMIN[@]}" partitions terminate acme-p0 --yes >"$WORK/x.txt"
expect "provider terminates acme-p0" '^state +terminated' "$WORK/x.txt"
"${P11[@]}" -L >"$WORK/slots-gone.txt" 2>&1 || true
if grep -q 'acme-p0' "$WORK/slots-gone.txt"; then echo "not ok - terminated slot still listed" >&2; exit 1; fi
echo "ok - acme's slot is gone"
"${ADMIN[@]}" partitions allocate acme --name acme-p0 >"$WORK/reuse.txt" 2>&1 && { echo "not ok - name reused" >&2; exit 1; }
expect "a terminated partition's name is never reused" 'never reused|used before' "$WORK/reuse.txt"
"${ADMIN[@]}" audit verify >"$WORK/verify.txt"
expect "the audit log still verifies after the termination" '^acme +ok' "$WORK/verify.txt"
"${ADMIN[@]}" audit query --tenant acme >"$WORK/audit.txt"
expect "acme's audit records are kept, the termination among them" 'admin.partition.terminate' "$WORK/audit.txt"
expect "and acme's own key uses" 'C_Sign|SignInit|sign' "$WORK/audit.txt"
stop_server

# ---- The older backup, restored elsewhere with the same root key ----
R="$WORK/elsewhere"; mkdir -p "$R"
RPORT="$(free_port)"; RAPORT="$(free_port)"
sed -e "s#$D/hsmlink.db#$R/hsmlink.db#" -e "s#127.0.0.1:$PORT#127.0.0.1:$RPORT#" \
    -e "s#127.0.0.1:$APORT#127.0.0.1:$RAPORT#" "$D/server.toml" >"$R/server.toml"
# The key ring as it is now: the live partitions' entries, not acme-p0's.
cp "$D/hsmlink.keyring" "$R/hsmlink.keyring"
# The audit log in the backup is signed with the instance's audit key.
cp -p "$D/audit.key" "$R/audit.key"
"$HSMLINK_SERVER" restore --config "$R/server.toml" --in "$WORK/before.backup" >"$WORK/restore.txt"
expect "the older backup restores, and says acme-p0 cannot be decrypted" \
    'partition acme-p0: no key-encryption key' "$WORK/restore.txt"
start_server "$R/server.toml" "$RAPORT" "$WORK/restored.log"
RADMIN=("$HSMLINK_SERVER" admin --url "https://127.0.0.1:$RAPORT" --ca "$D/ca.pem"
        --cert "$D/admin.pem" --key "$D/admin-key.pem")
"${RADMIN[@]}" partitions show acme-p0 >"$WORK/rp.txt"
expect "restored elsewhere, acme-p0's keys cannot be opened" '^state +unavailable' "$WORK/rp.txt"
sed -e "s#127.0.0.1:$PORT#127.0.0.1:$RPORT#" "$WORK/acme.toml" >"$WORK/acme-r.toml"
HSMLINK_CONF="$WORK/acme-r.toml" "${P11[@]}" --slot 0 --login --pin acme-user-pin -O >"$WORK/ro.txt" 2>&1 || true
if grep -q 'acme-key' "$WORK/ro.txt"; then echo "not ok - a terminated key came back from a backup" >&2; exit 1; fi
echo "ok - acme's key does not come back from the older backup"
sed -e "s#127.0.0.1:$PORT#127.0.0.1:$RPORT#" "$D/client.toml" >"$WORK/demo-r.toml"
HSMLINK_CONF="$WORK/demo-r.toml" "${P11[@]}" -T >"$WORK/demo-r.txt" 2>&1
expect "the same backup still serves the partitions that were not terminated" 'demo-p0|token state' "$WORK/demo-r.txt"
stop_server
echo "ok - provider-tenant walkthrough complete"
