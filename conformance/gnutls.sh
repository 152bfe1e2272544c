#!/usr/bin/env bash
# GnuTLS against the module (p11tool and certtool, Debian's gnutls-bin):
# tokens, mechanisms and objects listed by PKCS#11 URI (RFC 7512), RSA and
# ECDSA keys generated on the token and tested with --test-sign, a
# self-signed certificate made by certtool with a token key, checked by
# OpenSSL and certtool, written back to the token and listed; an Ed25519
# certificate made by certtool with a token key.
source "$(dirname "$0")/lib.sh"
for tool in p11tool certtool openssl; do
    command -v "$tool" >/dev/null || { echo "$tool missing: apt-get install gnutls-bin openssl" >&2; exit 1; }
done

start_deployment
init_token "gnutls token" so-pin-1234 user-pin-1234
# GnuTLS reads the PINs from the environment instead of asking.
export GNUTLS_PIN=user-pin-1234 GNUTLS_SO_PIN=so-pin-1234
P="p11tool --provider $HSMLINK_MODULE"
C="certtool --provider $HSMLINK_MODULE"

$P --list-tokens >"$WORK/tokens.txt" 2>&1
expect "p11tool --list-tokens: label" 'Label: gnutls token' "$WORK/tokens.txt"
expect "p11tool --list-tokens: manufacturer" 'Manufacturer: hsmlink' "$WORK/tokens.txt"
$P --list-token-urls >"$WORK/urls.txt" 2>&1
expect "token URI" '^pkcs11:.*manufacturer=hsmlink;serial=[0-9a-f]+;token=gnutls%20token$' "$WORK/urls.txt"
TOKEN="$(grep -m1 '^pkcs11:' "$WORK/urls.txt")"
# A shorter URI naming the token by label alone selects it too.
SHORT="pkcs11:token=gnutls%20token"

$P --list-mechanisms "$TOKEN" >"$WORK/mechs.txt" 2>&1
expect "mechanisms: RSA key pair generation" 'CKM_RSA_PKCS_KEY_PAIR_GEN .*generate_key_pair' "$WORK/mechs.txt"
expect "mechanisms: ECDSA" 'CKM_ECDSA .*sign verify' "$WORK/mechs.txt"
expect "mechanisms: AES-GCM" 'CKM_AES_GCM' "$WORK/mechs.txt"

$P --login --generate-privkey rsa --bits 2048 --label rsa-key --id 01 --outfile "$WORK/rsa-pub.pem" "$TOKEN" >"$WORK/gen-rsa.txt" 2>&1
$P --login --generate-privkey ecdsa --curve secp256r1 --label ec-key --id 02 --outfile "$WORK/ec-pub.pem" "$SHORT" >"$WORK/gen-ec.txt" 2>&1
expect "RSA public key returned" 'BEGIN PUBLIC KEY' "$WORK/rsa-pub.pem"
expect "EC public key returned" 'BEGIN PUBLIC KEY' "$WORK/ec-pub.pem"

$P --login --list-privkeys "$TOKEN" >"$WORK/privkeys.txt" 2>&1
expect "RSA private key listed by URI" "URL: pkcs11:.*token=gnutls%20token;id=%01;object=rsa-key;type=private" "$WORK/privkeys.txt"
expect "EC private key listed by URI" "URL: pkcs11:.*token=gnutls%20token;id=%02;object=ec-key;type=private" "$WORK/privkeys.txt"
expect "private keys sensitive" 'CKA_NEVER_EXTRACTABLE; CKA_SENSITIVE' "$WORK/privkeys.txt"
expect "RSA key type" 'Private key \(RSA-2048\)' "$WORK/privkeys.txt"
expect "EC key type" 'Private key \(EC/ECDSA-SECP256R1\)' "$WORK/privkeys.txt"
# Without login the private keys are invisible.
$P --list-privkeys "$TOKEN" >"$WORK/privkeys-nologin.txt" 2>&1 || true
if grep -q 'type=private' "$WORK/privkeys-nologin.txt"; then
    echo "not ok - private keys visible without login" >&2; cat "$WORK/privkeys-nologin.txt" >&2; exit 1
fi
echo "ok - private keys hidden without login"

for key in rsa-key ec-key; do
    $P --login --test-sign "$SHORT;object=$key;type=private" >"$WORK/test-sign-$key.txt" 2>&1
    expect "--test-sign $key: signature" '^Signing using .*\.\.\. ok' "$WORK/test-sign-$key.txt"
    expect "--test-sign $key: verified with the token's public key" 'Verifying against public key in the token\.\.\. ok' "$WORK/test-sign-$key.txt"
done

# certtool: self-signed certificates, signed on the token.
cat >"$WORK/template.cfg" <<'EOF'
cn = "hsmlink gnutls conformance"
serial = 1
expiration_days = 2
ca
cert_signing_key
signing_key
EOF
for key in ec-key rsa-key; do
    $C --generate-self-signed --load-privkey "$TOKEN;object=$key;type=private" \
        --template "$WORK/template.cfg" --outfile "$WORK/$key.pem" >"$WORK/certtool-$key.txt" 2>&1
    openssl verify -CAfile "$WORK/$key.pem" "$WORK/$key.pem" >"$WORK/verify-$key.txt" 2>&1
    expect "$key certificate: openssl verify" ': OK$' "$WORK/verify-$key.txt"
    certtool --verify --load-ca-certificate "$WORK/$key.pem" --infile "$WORK/$key.pem" >"$WORK/cverify-$key.txt" 2>&1
    expect "$key certificate: certtool --verify" 'Chain verification output: Verified' "$WORK/cverify-$key.txt"
done
# The certificates carry the token's public keys.
for pair in ec-key:ec-pub rsa-key:rsa-pub; do
    if ! cmp -s <(openssl x509 -in "$WORK/${pair%%:*}.pem" -pubkey -noout | openssl pkey -pubin -outform DER) \
        <(openssl pkey -pubin -in "$WORK/${pair##*:}.pem" -outform DER); then
        echo "not ok - the ${pair%%:*} certificate does not carry the token's public key" >&2; exit 1
    fi
done
echo "ok - certificates carry the token's public keys"
openssl x509 -in "$WORK/ec-key.pem" -noout -text >"$WORK/ec-cert.txt"
expect "EC certificate signed with ECDSA-SHA256" 'Signature Algorithm: ecdsa-with-SHA256' "$WORK/ec-cert.txt"
openssl x509 -in "$WORK/rsa-key.pem" -noout -text >"$WORK/rsa-cert.txt"
expect "RSA certificate signed with RSA-SHA256" 'Signature Algorithm: sha256WithRSAEncryption' "$WORK/rsa-cert.txt"

# Ed25519: GnuTLS 3.7's p11tool --generate-privkey ed25519 asks for CKM_EDDSA
# instead of CKM_EC_EDWARDS_KEY_PAIR_GEN (CKR_MECHANISM_INVALID, from any
# conforming token), so pkcs11-tool makes the key; certtool signs with it.
pkcs11-tool --module "$HSMLINK_MODULE" --login --pin "$GNUTLS_PIN" --keypairgen --key-type EC:edwards25519 \
    --id 03 --label ed-key >/dev/null 2>&1
$C --generate-self-signed --load-privkey "$TOKEN;object=ed-key;type=private" \
    --template "$WORK/template.cfg" --outfile "$WORK/ed-key.pem" >"$WORK/certtool-ed.txt" 2>&1
openssl verify -CAfile "$WORK/ed-key.pem" "$WORK/ed-key.pem" >"$WORK/verify-ed.txt" 2>&1
expect "Ed25519 certificate by certtool: openssl verify" ': OK$' "$WORK/verify-ed.txt"
openssl x509 -in "$WORK/ed-key.pem" -noout -text >"$WORK/ed-cert.txt"
expect "Ed25519 certificate signed with ED25519" 'Signature Algorithm: ED25519' "$WORK/ed-cert.txt"

# The certificate goes back onto the token, beside its key.
$P --login --write --load-certificate "$WORK/ec-key.pem" --label ec-cert --id 02 "$TOKEN" >"$WORK/write.txt" 2>&1
$P --list-all-certs "$TOKEN" >"$WORK/certs.txt" 2>&1
expect "certificate listed by URI (no login: public)" "URL: pkcs11:.*token=gnutls%20token;id=%02;object=ec-cert;type=cert" "$WORK/certs.txt"
expect "certificate type" 'X.509 Certificate \(EC/ECDSA-SECP256R1\)' "$WORK/certs.txt"
$P --export "$SHORT;object=ec-cert;type=cert" >"$WORK/exported.pem" 2>/dev/null
cmp -s <(openssl x509 -in "$WORK/exported.pem" -outform DER) <(openssl x509 -in "$WORK/ec-key.pem" -outform DER) \
    || { echo "not ok - the certificate read back differs" >&2; exit 1; }
echo "ok - certificate read back by URI, byte for byte"
$P --login --list-all "$TOKEN" >"$WORK/all.txt" 2>&1
n="$(grep -c '^Object ' "$WORK/all.txt" || true)"
[ "$n" -eq 7 ] || { cat "$WORK/all.txt" >&2; echo "not ok - $n objects, expected 7" >&2; exit 1; }
echo "ok - 7 objects on the token (3 key pairs, 1 certificate)"
echo "gnutls: all ok"
