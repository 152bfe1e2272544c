#!/usr/bin/env bash
# A tenant administrator's day with OpenSC's pkcs11-tool through the module:
# a key of every type, listing, public keys exported and checked by OpenSSL,
# signatures, encryption, wrapping, derivation, deletion.
source "$(dirname "$0")/lib.sh"
start_deployment
SO=so-admin-1234; PIN=user-admin-5678
init_token admin "$SO" "$PIN"
P11=(pkcs11-tool --module "$HSMLINK_MODULE" --login --pin "$PIN")
# same A B WHAT: the two files are equal, or the script fails.
same() { if cmp -s "$1" "$2"; then echo "ok - $3"; else echo "not ok - $3" >&2; exit 1; fi; }
p11() { "${P11[@]}" "$@" >"$WORK/out.txt" 2>&1 || { cat "$WORK/out.txt" >&2; echo "not ok - pkcs11-tool $*" >&2; exit 1; }; }

# Key generation, every key type the token offers.
p11 --keypairgen --key-type rsa:2048 --id 01 --label rsa2048 --usage-sign --usage-decrypt
p11 --keypairgen --key-type rsa:3072 --id 02 --label rsa3072 --usage-sign
p11 --keypairgen --key-type EC:prime256v1 --id 03 --label p256 --usage-sign --usage-derive
p11 --keypairgen --key-type EC:secp384r1 --id 04 --label p384 --usage-sign
p11 --keypairgen --key-type EC:secp521r1 --id 05 --label p521 --usage-sign
p11 --keypairgen --key-type EC:edwards25519 --id 06 --label ed25519 --usage-sign
# Secure templates: a data key (07) and a key-encryption key (0b) apart;
# one key holding both roles is refused.
p11 --keygen --key-type AES:32 --id 07 --label aes256 --usage-decrypt --extractable
p11 --keygen --key-type AES:32 --id 0b --label kek256 --usage-wrap
if "${P11[@]}" --keygen --key-type AES:32 --id 0c --label both --usage-decrypt --usage-wrap >"$WORK/both.txt" 2>&1; then
    echo "not ok - an AES key that decrypts and wraps was made" >&2; exit 1
fi
expect "decrypt+wrap refused" 'CKR_TEMPLATE_INCONSISTENT' "$WORK/both.txt"
p11 --keygen --key-type AES:16 --id 08 --label aes128 --extractable
p11 --keygen --key-type GENERIC:32 --id 09 --label secret
echo "ok - RSA 2048/3072, EC P-256/384/521, Ed25519, AES-128/256 and generic secret keys generated"

"${P11[@]}" --list-objects >"$WORK/list.txt" 2>&1
for label in rsa2048 rsa3072 p256 p384 p521 ed25519 aes256 aes128 secret; do
    expect "$label listed" "label:[[:space:]]+$label\$" "$WORK/list.txt"
done
[ "$(grep -c '^Private Key Object' "$WORK/list.txt")" -eq 6 ] || { cat "$WORK/list.txt" >&2; exit 1; }
echo "ok - six private keys, their public keys and three secret keys listed"

# Public keys exported (DER SubjectPublicKeyInfo) and read by OpenSSL. (Not
# P-384: pkcs11-tool 0.23 cannot build that EVP_PKEY, on SoftHSMv2 either.)
# pkcs11-tool writes PEM for EdDSA keys, DER for the others.
for id in 01 02 03 05 06; do
    p11 --read-object --type pubkey --id "$id" --output-file "$WORK/pub$id.der"
    form=DER; [ "$id" = 06 ] && form=PEM
    openssl pkey -pubin -inform "$form" -in "$WORK/pub$id.der" -text -noout >"$WORK/pub$id.txt"
done
expect "RSA 3072 public key" 'Public-Key: \(3072 bit\)' "$WORK/pub02.txt"
expect "P-521 public key" 'NIST CURVE: P-521' "$WORK/pub05.txt"
expect "Ed25519 public key" 'ED25519 Public-Key' "$WORK/pub06.txt"

# Signatures made on the token, verified by the token and by OpenSSL.
printf 'a payment instruction' >"$WORK/msg"
p11 --sign --id 01 --mechanism SHA256-RSA-PKCS-PSS \
    --input-file "$WORK/msg" --output-file "$WORK/pss.sig"
p11 --verify --id 01 --mechanism SHA256-RSA-PKCS-PSS \
    --input-file "$WORK/msg" --signature-file "$WORK/pss.sig"
expect "PSS verified on the token" 'Signature is valid' "$WORK/out.txt"
openssl dgst -sha256 -verify "$WORK/pub01.der" -keyform DER -sigopt rsa_padding_mode:pss \
    -sigopt rsa_pss_saltlen:-1 -signature "$WORK/pss.sig" "$WORK/msg" >"$WORK/ossl.txt"
expect "PSS verified by OpenSSL" 'Verified OK' "$WORK/ossl.txt"
p11 --sign --id 05 --mechanism ECDSA-SHA512 --signature-format openssl \
    --input-file "$WORK/msg" --output-file "$WORK/p521.sig"
openssl dgst -sha512 -verify "$WORK/pub05.der" -keyform DER -signature "$WORK/p521.sig" "$WORK/msg" >"$WORK/ossl.txt"
expect "P-521 ECDSA verified by OpenSSL" 'Verified OK' "$WORK/ossl.txt"
p11 --sign --id 04 --mechanism ECDSA-SHA384 --input-file "$WORK/msg" --output-file "$WORK/p384.sig"
p11 --verify --id 04 --mechanism ECDSA-SHA384 --input-file "$WORK/msg" --signature-file "$WORK/p384.sig"
expect "P-384 ECDSA verified on the token" 'Signature is valid' "$WORK/out.txt"
p11 --sign --id 06 --mechanism EDDSA --input-file "$WORK/msg" --output-file "$WORK/ed.sig"
openssl pkeyutl -verify -pubin -keyform PEM -inkey "$WORK/pub06.der" -rawin -in "$WORK/msg" \
    -sigfile "$WORK/ed.sig" >"$WORK/ossl.txt"
expect "Ed25519 verified by OpenSSL" 'Signature Verified Successfully' "$WORK/ossl.txt"

# Encryption: RSA-OAEP by OpenSSL, decrypted on the token; AES on the token both ways.
printf 'a data key' >"$WORK/secret"
openssl pkeyutl -encrypt -pubin -keyform DER -inkey "$WORK/pub01.der" -pkeyopt rsa_padding_mode:oaep \
    -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256 -in "$WORK/secret" -out "$WORK/oaep.bin"
p11 --decrypt --id 01 --mechanism RSA-PKCS-OAEP --hash-algorithm SHA256 --mgf MGF1-SHA256 \
    --input-file "$WORK/oaep.bin" --output-file "$WORK/oaep.out"
same "$WORK/secret" "$WORK/oaep.out" "OAEP ciphertext from OpenSSL decrypted on the token"
IV=00112233445566778899aabbccddeeff
p11 --encrypt --id 07 --mechanism AES-CBC-PAD --iv "$IV" --input-file "$WORK/msg" --output-file "$WORK/cbc.bin"
p11 --decrypt --id 07 --mechanism AES-CBC-PAD --iv "$IV" --input-file "$WORK/cbc.bin" --output-file "$WORK/cbc.out"
same "$WORK/msg" "$WORK/cbc.out" "AES-CBC-PAD round trip on the token"

# Wrapping: the AES-128 key wrapped under the AES-256 KEK (RFC 3394), unwrapped as a new key.
p11 --wrap --id 0b --application-id 08 --mechanism AES-KEY-WRAP --output-file "$WORK/wrapped.bin"
[ "$(stat -c %s "$WORK/wrapped.bin")" -eq 24 ] || { echo "not ok - wrapped AES-128 is not 24 bytes" >&2; exit 1; }
# pkcs11-tool asks CKA_SENSITIVE false unless told --sensitive: a strict
# partition refuses to unwrap a key as readable (it would read a sensitive
# key out), so first that refusal, then the unwrap with --sensitive.
if "${P11[@]}" --unwrap --id 0b --mechanism AES-KEY-WRAP --input-file "$WORK/wrapped.bin" \
    --key-type AES: --application-id 0c --application-label readable --extractable >"$WORK/readable.err" 2>&1; then
    echo "not ok - a key was unwrapped as readable on a strict partition" >&2; exit 1
fi
expect "unwrap as readable refused" "CKR_TEMPLATE_INCONSISTENT" "$WORK/readable.err"
p11 --unwrap --id 0b --mechanism AES-KEY-WRAP --input-file "$WORK/wrapped.bin" \
    --key-type AES: --application-id 0a --application-label unwrapped --extractable --sensitive
"${P11[@]}" --list-objects --type secrkey >"$WORK/secret.txt" 2>&1
expect "unwrapped key stored" "label:[[:space:]]+unwrapped" "$WORK/secret.txt"
p11 --encrypt --id 08 --mechanism AES-ECB --input-file <(printf '0123456789abcdef') --output-file "$WORK/a.bin"
p11 --encrypt --id 0a --mechanism AES-ECB --input-file <(printf '0123456789abcdef') --output-file "$WORK/b.bin"
same "$WORK/a.bin" "$WORK/b.bin" "the unwrapped key is the wrapped one (same AES-ECB output)"

# Derivation: ECDH between the token's P-256 key and an OpenSSL key, both sides equal.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/peer.pem" 2>/dev/null
openssl pkey -in "$WORK/peer.pem" -pubout -outform DER -out "$WORK/peer.der"
p11 --derive --id 03 --mechanism ECDH1-DERIVE --input-file "$WORK/peer.der" --output-file "$WORK/token.secret"
openssl pkeyutl -derive -inkey "$WORK/peer.pem" -peerkey "$WORK/pub03.der" -peerform DER -out "$WORK/ossl.secret"
same "$WORK/token.secret" "$WORK/ossl.secret" "ECDH secret equals OpenSSL's"

# Deletion.
p11 --delete-object --type privkey --id 02
p11 --delete-object --type pubkey --id 02
p11 --delete-object --type secrkey --id 09
"${P11[@]}" --list-objects >"$WORK/after.txt" 2>&1
if grep -Eq 'label:[[:space:]]+(rsa3072|secret)$' "$WORK/after.txt"; then
    cat "$WORK/after.txt" >&2; echo "not ok - deleted objects still listed" >&2; exit 1
fi
echo "ok - deleted keys are gone"
