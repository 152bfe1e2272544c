#!/usr/bin/env bash
# OpenSSL 3 through the PKCS#11 engine (Debian's libengine-pkcs11-openssl,
# libp11): self-signed certificates by `openssl req -x509` with an RSA and an
# EC key on the token, `pkeyutl -sign` (PKCS#1 v1.5, PSS, ECDSA), `-verify`
# through the engine and by plain OpenSSL against the exported public key,
# `-decrypt` (PKCS#1 v1.5 and OAEP) of ciphertexts made by plain OpenSSL.
# Keys are named by PKCS#11 URI (RFC 7512), with the PIN as pin-value.
#
# The engine is configured once through an openssl.cnf (OPENSSL_CONF, written
# by lib.sh's engine_conf), and once through PKCS11_MODULE_PATH alone.
#
# The OpenSSL 3 pkcs11-provider is not in Debian 12 (bookworm): it arrived
# with Debian 13; apt-cache policy pkcs11-provider finds no candidate.
source "$(dirname "$0")/lib.sh"
command -v openssl >/dev/null || { echo "openssl missing" >&2; exit 1; }
command -v pkcs11-tool >/dev/null || { echo "pkcs11-tool missing: apt-get install opensc" >&2; exit 1; }

start_deployment
init_token "openssl token" so-pin-1234 user-pin-1234
P11="pkcs11-tool --module $HSMLINK_MODULE --login --pin user-pin-1234"
$P11 --keypairgen --key-type rsa:2048 --id 01 --label rsa-key >/dev/null 2>&1
$P11 --keypairgen --key-type EC:prime256v1 --id 02 --label ec-key >/dev/null 2>&1

engine_conf "$WORK/openssl.cnf"
export OPENSSL_CONF="$WORK/openssl.cnf"

openssl engine -t -c pkcs11 >"$WORK/engine.txt" 2>&1
expect "engine loads the module" '\[ available \]' "$WORK/engine.txt"

TOKEN="pkcs11:token=openssl%20token"
RSA="$TOKEN;object=rsa-key;type=private;pin-value=user-pin-1234"
EC="$TOKEN;object=ec-key;type=private;pin-value=user-pin-1234"
ENG=(-engine pkcs11 -keyform engine)

# Public keys as plain OpenSSL sees them, read from the token.
for id in 01:rsa 02:ec; do
    pkcs11-tool --module "$HSMLINK_MODULE" --read-object --type pubkey --id "${id%%:*}" -o "$WORK/${id##*:}-pub.der" >/dev/null 2>&1
    openssl pkey -pubin -inform DER -in "$WORK/${id##*:}-pub.der" -out "$WORK/${id##*:}-pub.pem"
done

# openssl req -x509 with a token key.
for key in rsa ec; do
    uri="$RSA"; [ "$key" = ec ] && uri="$EC"
    openssl req -x509 "${ENG[@]}" -key "$uri" -sha256 -subj "/CN=hsmlink $key" -days 2 \
        -out "$WORK/$key.pem" >"$WORK/req-$key.txt" 2>&1
    openssl verify -CAfile "$WORK/$key.pem" "$WORK/$key.pem" >"$WORK/verify-$key.txt" 2>&1
    expect "req -x509 ($key): self-signature verifies" ': OK$' "$WORK/verify-$key.txt"
    cmp -s <(openssl x509 -in "$WORK/$key.pem" -pubkey -noout) "$WORK/$key-pub.pem" \
        || { echo "not ok - the $key certificate does not carry the token's key" >&2; exit 1; }
    echo "ok - req -x509 ($key): certificate carries the token's public key"
done

head -c 1000 /dev/urandom >"$WORK/msg"
openssl dgst -sha256 -binary "$WORK/msg" >"$WORK/dgst"

# pkeyutl -sign / -verify, RSA PKCS#1 v1.5 and PSS, ECDSA.
sign_and_verify() { # NAME KEY-URI PUBKEY [pkeyopt...]
    local name="$1" uri="$2" pub="$3"; shift 3
    local opts=(); for o in "$@"; do opts+=(-pkeyopt "$o"); done
    openssl pkeyutl "${ENG[@]}" -inkey "$uri" -sign -in "$WORK/dgst" -out "$WORK/sig-$name" "${opts[@]}" 2>"$WORK/sign-$name.txt" \
        || { cat "$WORK/sign-$name.txt" >&2; echo "not ok - pkeyutl -sign ($name)" >&2; exit 1; }
    openssl pkeyutl "${ENG[@]}" -inkey "$uri" -verify -in "$WORK/dgst" -sigfile "$WORK/sig-$name" "${opts[@]}" >"$WORK/ev-$name.txt" 2>&1
    expect "pkeyutl -verify through the engine ($name)" 'Signature Verified Successfully' "$WORK/ev-$name.txt"
    openssl pkeyutl -pubin -inkey "$pub" -verify -in "$WORK/dgst" -sigfile "$WORK/sig-$name" "${opts[@]}" >"$WORK/pv-$name.txt" 2>&1
    expect "plain openssl verifies ($name)" 'Signature Verified Successfully' "$WORK/pv-$name.txt"
    # A signature over another digest does not verify.
    openssl dgst -sha256 -binary "$WORK/dgst" >"$WORK/other"
    if openssl pkeyutl -pubin -inkey "$pub" -verify -in "$WORK/other" -sigfile "$WORK/sig-$name" "${opts[@]}" >/dev/null 2>&1; then
        echo "not ok - $name signature verified over the wrong digest" >&2; exit 1
    fi
}
sign_and_verify rsa-pkcs1 "$RSA" "$WORK/rsa-pub.pem" digest:sha256
sign_and_verify rsa-pss "$RSA" "$WORK/rsa-pub.pem" digest:sha256 rsa_padding_mode:pss rsa_pss_saltlen:32
sign_and_verify ecdsa "$EC" "$WORK/ec-pub.pem"

# pkeyutl -decrypt of what plain OpenSSL encrypted to the token's key.
head -c 100 /dev/urandom >"$WORK/secret"
decrypt() { # NAME [pkeyopt...]
    local name="$1"; shift
    local opts=(); for o in "$@"; do opts+=(-pkeyopt "$o"); done
    openssl pkeyutl -pubin -inkey "$WORK/rsa-pub.pem" -encrypt -in "$WORK/secret" -out "$WORK/ct-$name" "${opts[@]}"
    openssl pkeyutl "${ENG[@]}" -inkey "$RSA" -decrypt -in "$WORK/ct-$name" -out "$WORK/pt-$name" "${opts[@]}" 2>"$WORK/dec-$name.txt" \
        || { cat "$WORK/dec-$name.txt" >&2; echo "not ok - pkeyutl -decrypt ($name)" >&2; exit 1; }
    cmp -s "$WORK/secret" "$WORK/pt-$name" || { echo "not ok - decryption ($name) differs" >&2; exit 1; }
    echo "ok - pkeyutl -decrypt ($name)"
}
decrypt pkcs1
decrypt oaep-sha256 rsa_padding_mode:oaep rsa_oaep_md:sha256

# A wrong PIN in the URI: the engine's login fails, nothing is signed.
if openssl pkeyutl "${ENG[@]}" -inkey "$TOKEN;object=rsa-key;type=private;pin-value=wrong-pin-1" \
    -sign -in "$WORK/dgst" -out "$WORK/sig-wrong" >"$WORK/wrong.txt" 2>&1; then
    echo "not ok - signed with a wrong PIN" >&2; exit 1
fi
expect "wrong PIN refused" 'PIN incorrect' "$WORK/wrong.txt"

# The same engine without a configuration file: PKCS11_MODULE_PATH names the
# module, the key is named by its id.
unset OPENSSL_CONF
PKCS11_MODULE_PATH="$HSMLINK_MODULE" openssl pkeyutl "${ENG[@]}" \
    -inkey "$TOKEN;id=%01;type=private;pin-value=user-pin-1234" -sign -in "$WORK/dgst" \
    -out "$WORK/sig-env" -pkeyopt digest:sha256 2>"$WORK/env.txt" \
    || { cat "$WORK/env.txt" >&2; echo "not ok - PKCS11_MODULE_PATH" >&2; exit 1; }
openssl pkeyutl -pubin -inkey "$WORK/rsa-pub.pem" -verify -in "$WORK/dgst" -sigfile "$WORK/sig-env" \
    -pkeyopt digest:sha256 >"$WORK/env-verify.txt" 2>&1
expect "engine through PKCS11_MODULE_PATH, key by id" 'Signature Verified Successfully' "$WORK/env-verify.txt"
echo "openssl engine: all ok"
