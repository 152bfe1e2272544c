#!/usr/bin/env bash
# A tenant administers its partition with OpenSC's pkcs11-tool alone:
# token and PIN set-up, login, objects written, listed, read and deleted,
# wrong PINs refused and the PIN locked after the limit.
source "$(dirname "$0")/lib.sh"
command -v pkcs11-tool >/dev/null || { echo "pkcs11-tool missing: apt-get install opensc" >&2; exit 1; }
command -v openssl >/dev/null || { echo "openssl missing" >&2; exit 1; }

start_deployment
P11="pkcs11-tool --module $HSMLINK_MODULE"
SO=so-pin-8765
USER=user-pin-1234
NEWUSER=user-pin-4321

$P11 --init-token --label "tenant token" --so-pin "$SO" >"$WORK/init.txt" 2>&1
expect "token initialised" 'Token successfully initialized|successfully initialized' "$WORK/init.txt"
$P11 -L >"$WORK/slots.txt" 2>&1
expect "label shown" 'tenant token' "$WORK/slots.txt"

$P11 --init-pin --so-pin "$SO" --pin "$USER" >"$WORK/initpin.txt" 2>&1
expect "user PIN set by the SO" 'User PIN successfully initialized|successfully initialized' "$WORK/initpin.txt"
$P11 -L >"$WORK/slots2.txt" 2>&1
expect "user PIN must be changed" 'PIN to be changed|user PIN to be changed|to be changed' "$WORK/slots2.txt"

$P11 --change-pin --pin "$USER" --new-pin "$NEWUSER" >"$WORK/chpin.txt" 2>&1
expect "user changes the PIN" 'PIN successfully changed' "$WORK/chpin.txt"
$P11 --change-pin --login --login-type so --so-pin "$SO" --new-pin "$SO-2" >"$WORK/chso.txt" 2>&1
expect "SO changes its PIN" 'PIN successfully changed' "$WORK/chso.txt"
SO="$SO-2"

# Objects: a data object, a certificate, an AES key of known value.
printf 'hello from pkcs11-tool' >"$WORK/data.bin"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/k.pem" \
    -subj "/CN=hsmlink conformance" -days 2 -outform DER -out "$WORK/cert.der" 2>/dev/null
head -c 32 /dev/urandom >"$WORK/aes.key"
L="$P11 --login --pin $NEWUSER"
$L --write-object "$WORK/data.bin" --type data --label greeting >"$WORK/w1.txt" 2>&1
$L --write-object "$WORK/cert.der" --type cert --label mycert --id 01 >"$WORK/w2.txt" 2>&1
$L --write-object "$WORK/aes.key" --type secrkey --key-type AES:32 --label aeskey --id 02 >"$WORK/w3.txt" 2>&1
for f in w1 w2 w3; do expect "write-object ($f)" 'Created' "$WORK/$f.txt"; done

$L --list-objects >"$WORK/list.txt" 2>&1
expect "data object listed" "label:[[:space:]]+'greeting'" "$WORK/list.txt"
expect "certificate listed" 'Certificate Object' "$WORK/list.txt"
expect "AES key listed" 'Secret Key Object; AES' "$WORK/list.txt"

$L --read-object --type data --label greeting -o "$WORK/data.out" >/dev/null 2>&1
cmp "$WORK/data.bin" "$WORK/data.out" || { echo "not ok - data object read back" >&2; exit 1; }
echo "ok - data object read back"
$L --read-object --type cert --id 01 -o "$WORK/cert.out" >/dev/null 2>&1
cmp "$WORK/cert.der" "$WORK/cert.out" || { echo "not ok - certificate read back" >&2; exit 1; }
echo "ok - certificate read back"

$L --delete-object --type data --label greeting >/dev/null 2>&1
$L --list-objects >"$WORK/list2.txt" 2>&1
if grep -q 'greeting' "$WORK/list2.txt"; then echo "not ok - data object not deleted" >&2; exit 1; fi
echo "ok - data object deleted"

# Wrong PINs: refused, then the PIN locks (limit 10).
if $P11 --login --pin 00000000 --list-objects >"$WORK/bad.txt" 2>&1; then
    echo "not ok - a wrong PIN was accepted" >&2; exit 1
fi
expect "wrong PIN refused" 'CKR_PIN_INCORRECT' "$WORK/bad.txt"
for _ in $(seq 2 10); do $P11 --login --pin 00000000 --list-objects >/dev/null 2>&1 || true; done
$P11 --login --pin "$NEWUSER" --list-objects >"$WORK/locked.txt" 2>&1 || true
expect "PIN locked after 10 failures" 'CKR_PIN_LOCKED' "$WORK/locked.txt"
echo "pkcs11-tool token walkthrough: all ok"
