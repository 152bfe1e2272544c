#!/usr/bin/env bash
# OpenSC's pkcs11-tool against libhsmlink_pkcs11.so and a real server:
# -L lists the demo tenant's slot, -I shows hsmlink's library info, -M lists
# the mechanisms the server reports for the slot.
source "$(dirname "$0")/lib.sh"
command -v pkcs11-tool >/dev/null || { echo "pkcs11-tool missing: apt-get install opensc" >&2; exit 1; }

start_deployment
P11="pkcs11-tool --module $HSMLINK_MODULE"

$P11 -I >"$WORK/info.txt" 2>&1
expect "library manufacturer is hsmlink" 'Manufacturer[[:space:]]+hsmlink' "$WORK/info.txt"
expect "cryptoki version 3.0" 'Cryptoki version 3\.0' "$WORK/info.txt"

$P11 -L >"$WORK/slots.txt" 2>&1
expect "one slot listed" 'Available slots:' "$WORK/slots.txt"
expect "slot description from the server" 'hsmlink slot 0' "$WORK/slots.txt"
expect "token not initialised" 'uninitialized' "$WORK/slots.txt"

$P11 -M >"$WORK/mechs.txt" 2>&1
expect "AES-GCM listed" 'AES-GCM' "$WORK/mechs.txt"
expect "RSA key pair generation 2048..4096" 'RSA-PKCS-KEY-PAIR-GEN, keySize=\{2048,4096\}' "$WORK/mechs.txt"
expect "ECDSA-SHA256 listed" 'ECDSA-SHA256' "$WORK/mechs.txt"
expect "SM2 vendor mechanism listed" '0x[cC]8530102' "$WORK/mechs.txt"

# The server goes away: pkcs11-tool gets an error, not a hang.
kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=""
if timeout 60 $P11 -L >"$WORK/down.txt" 2>&1; then
    echo "not ok - pkcs11-tool -L succeeded without a server" >&2; cat "$WORK/down.txt" >&2; exit 1
fi
expect "error reported when the server is down" 'CKR_DEVICE_ERROR|CKR_TOKEN_NOT_PRESENT|error' "$WORK/down.txt"
echo "pkcs11-tool conformance: all ok"
