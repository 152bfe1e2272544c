#!/usr/bin/env bash
# Keys generated on the token, operations run through pkcs11-tool and the
# module, results checked by OpenSSL (and the other way round):
# RSA PKCS#1 v1.5 and PSS signatures, OAEP decryption, ECDSA, Ed25519, ECDH,
# AES-CBC-PAD against `openssl enc`.
source "$(dirname "$0")/lib.sh"
command -v pkcs11-tool >/dev/null || { echo "pkcs11-tool missing: apt-get install opensc" >&2; exit 1; }

start_deployment
P11="pkcs11-tool --module $HSMLINK_MODULE"
PIN=user-pin-1234
$P11 --init-token --label interop --so-pin so-pin-1234 >/dev/null 2>&1
$P11 --init-pin --so-pin so-pin-1234 --pin first-pin >/dev/null 2>&1
$P11 --change-pin --pin first-pin --new-pin "$PIN" >/dev/null 2>&1
L="$P11 --login --pin $PIN"
cd "$WORK"
printf 'message signed on the token and checked by openssl\n' >msg

pubkey() { # ID NAME: export the public key of ID as NAME.pem
    $L --read-object --type pubkey --id "$1" -o "$2.der" >/dev/null 2>&1
    # pkcs11-tool writes DER, but PEM for EdDSA keys.
    openssl pkey -pubin -inform DER -in "$2.der" -out "$2.pem" 2>/dev/null \
        || openssl pkey -pubin -inform PEM -in "$2.der" -out "$2.pem"
}

# RSA
$L --keypairgen --key-type rsa:2048 --id 10 --label rsa >keygen-rsa.txt 2>&1
pubkey 10 rsa
$L --sign --id 10 --mechanism SHA256-RSA-PKCS -i msg -o sig.pkcs1 >/dev/null 2>&1
check "RSA PKCS#1 v1.5 signature verifies with openssl" openssl dgst -sha256 -verify rsa.pem -signature sig.pkcs1 msg
$L --sign --id 10 --mechanism SHA256-RSA-PKCS-PSS -i msg -o sig.pss >/dev/null 2>&1
check "RSA-PSS signature verifies with openssl" openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 -verify rsa.pem -signature sig.pss msg
openssl pkeyutl -encrypt -pubin -inkey rsa.pem -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256 -in msg -out msg.oaep
$L --decrypt --id 10 --mechanism RSA-PKCS-OAEP --hash-algorithm SHA256 --mgf MGF1-SHA256 -i msg.oaep -o msg.dec >/dev/null 2>&1
check "an openssl OAEP ciphertext decrypts on the token" cmp msg msg.dec

# ECDSA P-256
$L --keypairgen --key-type EC:prime256v1 --id 20 --label ec --usage-sign --usage-derive >/dev/null 2>&1
pubkey 20 ec
$L --sign --id 20 --mechanism ECDSA-SHA256 --signature-format openssl -i msg -o sig.ecdsa >/dev/null 2>&1
check "ECDSA signature verifies with openssl" openssl dgst -sha256 -verify ec.pem -signature sig.ecdsa msg

# ECDH: the token's secret equals openssl's
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out peer.pem 2>/dev/null
openssl pkey -in peer.pem -pubout -outform DER -out peer.der
$L --derive --id 20 --mechanism ECDH1-DERIVE -i peer.der -o secret.token >/dev/null 2>&1
openssl pkeyutl -derive -inkey peer.pem -peerkey ec.pem -out secret.openssl
check "ECDH secret equals openssl's" cmp secret.token secret.openssl

# Ed25519
$L --keypairgen --key-type EC:edwards25519 --id 30 --label ed >/dev/null 2>&1
pubkey 30 ed
$L --sign --id 30 --mechanism EDDSA -i msg -o sig.ed >/dev/null 2>&1
check "Ed25519 signature verifies with openssl" openssl pkeyutl -verify -pubin -inkey ed.pem -rawin -in msg -sigfile sig.ed

# AES-CBC-PAD with a key of known value, against openssl enc
KEY=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
IV=0f0e0d0c0b0a09080706050403020100
python3 -c "import sys; sys.stdout.buffer.write(bytes.fromhex('$KEY'))" >aes.key
$L --write-object aes.key --type secrkey --key-type AES:32 --id 40 --label aes --usage-decrypt >/dev/null 2>&1
$L --encrypt --id 40 --mechanism AES-CBC-PAD --iv "$IV" -i msg -o msg.aes >/dev/null 2>&1
openssl enc -aes-256-cbc -K "$KEY" -iv "$IV" -in msg -out msg.aes.openssl
check "AES-CBC-PAD equals openssl enc" cmp msg.aes msg.aes.openssl
echo "openssl interop: all ok"
