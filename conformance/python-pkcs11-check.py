"""python-pkcs11 (PyPI) against the module: the token found by label, key
generation (AES, RSA, EC), sign/verify, encrypt/decrypt, wrap/unwrap,
attribute reads and writes. Signatures and ciphertexts are checked against
pyca/cryptography where one side is independent of the token.

Usage: python-pkcs11-check.py MODULE TOKEN-LABEL USER-PIN
"""

import sys

import pkcs11
from pkcs11 import MGF, Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import AttributeSensitive, PinIncorrect, SessionReadOnly
from pkcs11.mechanisms import GCMParams
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters
from pkcs11.util.rsa import encode_rsa_public_key

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

module, label, pin = sys.argv[1:4]


def ok(cond, what):
    if not cond:
        print(f"not ok - {what}")
        sys.exit(1)
    print(f"ok - {what}")


lib = pkcs11.lib(module)
ok(lib.manufacturer_id.strip() == "hsmlink", f"library manufacturer {lib.manufacturer_id.strip()!r}")
token = lib.get_token(token_label=label)
ok(token.label == label, f"token found by label {token.label!r}")
ok(token.manufacturer_id == "hsmlink", "token manufacturer")
mechanisms = token.slot.get_mechanisms()
for m in (Mechanism.RSA_PKCS_KEY_PAIR_GEN, Mechanism.ECDSA, Mechanism.AES_GCM, Mechanism.SHA256_RSA_PKCS_PSS):
    ok(m in mechanisms, f"mechanism list has {m.name}")

try:
    token.open(user_pin="wrong-pin-0")
    ok(False, "wrong PIN refused")
except PinIncorrect:
    ok(True, "wrong PIN refused")

data = b"hello from python-pkcs11" * 10

with token.open(user_pin=pin, rw=True) as session:
    # --- AES ---
    aes = session.generate_key(KeyType.AES, 256, label="py-aes", id=b"\x10", store=True)
    ok(aes[Attribute.VALUE_LEN] == 32, "AES-256 key generated (CKA_VALUE_LEN 32)")
    ok(aes[Attribute.SENSITIVE] is True and aes[Attribute.EXTRACTABLE] is False,
       "AES key sensitive and not extractable by default")
    ok(aes[Attribute.LOCAL] is True and aes[Attribute.ALWAYS_SENSITIVE] is True, "AES key local, always sensitive")
    try:
        aes[Attribute.VALUE]
        ok(False, "CKA_VALUE of a sensitive key unreadable")
    except AttributeSensitive:
        ok(True, "CKA_VALUE of a sensitive key unreadable")
    iv = session.generate_random(128)
    ok(len(iv) == 16, "C_GenerateRandom: 16 bytes")
    ct = aes.encrypt(data, mechanism_param=iv)  # AES-CBC-PAD by default
    ok(len(ct) == (len(data) // 16 + 1) * 16, "AES-CBC-PAD ciphertext length")
    ok(aes.decrypt(ct, mechanism_param=iv) == data, "AES-CBC-PAD round trip")
    nonce = session.generate_random(96)
    gcm = aes.encrypt(data, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(nonce, b"aad", 128))
    ok(aes.decrypt(gcm, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(nonce, b"aad", 128)) == data,
       "AES-GCM round trip")

    # An extractable AES key of known value: the token's GCM against pyca's.
    known = bytes(range(32))
    imported = session.create_object({
        Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES,
        Attribute.VALUE: known, Attribute.ENCRYPT: True, Attribute.DECRYPT: True,
        Attribute.TOKEN: False, Attribute.LABEL: "py-known",
    })
    gcm = imported.encrypt(data, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(nonce, b"aad", 128))
    ok(AESGCM(known).decrypt(nonce, gcm, b"aad") == data, "AES-GCM made on the token opens with pyca/cryptography")

    # --- RSA ---
    rsa_pub, rsa_priv = session.generate_keypair(KeyType.RSA, 2048, label="py-rsa", id=b"\x11", store=True)
    ok(rsa_pub[Attribute.MODULUS_BITS] == 2048, "RSA-2048 key pair generated")
    ok(rsa_pub[Attribute.PUBLIC_EXPONENT] == b"\x01\x00\x01", "public exponent 65537")
    ok(rsa_priv[Attribute.PRIVATE] is True and rsa_priv[Attribute.SENSITIVE] is True, "RSA private key private, sensitive")
    ok(rsa_priv[Attribute.KEY_GEN_MECHANISM] == Mechanism.RSA_PKCS_KEY_PAIR_GEN, "CKA_KEY_GEN_MECHANISM")
    pem = encode_rsa_public_key(rsa_pub)
    crypto_rsa = serialization.load_der_public_key(pem)  # PKCS#1 RSAPublicKey
    ok(len(pem) > 256, "public key encoded (PKCS#1 DER)")

    sig = rsa_priv.sign(data, mechanism=Mechanism.SHA256_RSA_PKCS)
    ok(rsa_pub.verify(data, sig, mechanism=Mechanism.SHA256_RSA_PKCS), "SHA256-RSA-PKCS verified on the token")
    crypto_rsa.verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
    ok(True, "SHA256-RSA-PKCS verified by pyca/cryptography")
    ok(not rsa_pub.verify(data + b"!", sig, mechanism=Mechanism.SHA256_RSA_PKCS), "altered data does not verify")

    pss = rsa_priv.sign(data, mechanism=Mechanism.SHA256_RSA_PKCS_PSS,
                        mechanism_param=(Mechanism.SHA256, MGF.SHA256, 32))
    crypto_rsa.verify(pss, data, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    ok(True, "SHA256-RSA-PKCS-PSS verified by pyca/cryptography")

    oaep = crypto_rsa.encrypt(data[:100], padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None))
    ok(rsa_priv.decrypt(oaep, mechanism=Mechanism.RSA_PKCS_OAEP,
                        mechanism_param=(Mechanism.SHA256, MGF.SHA256, None)) == data[:100],
       "RSA-OAEP (SHA-256) from pyca/cryptography decrypted on the token")
    ct = rsa_pub.encrypt(data[:100])  # OAEP with SHA-1, python-pkcs11's default
    ok(rsa_priv.decrypt(ct) == data[:100], "RSA-OAEP (SHA-1) round trip on the token")

    # --- EC ---
    params = session.create_domain_parameters(
        KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True)
    ec_pub, ec_priv = params.generate_keypair(label="py-ec", id=b"\x12", store=True)
    ok(ec_priv[Attribute.KEY_TYPE] == KeyType.EC, "EC P-256 key pair generated")
    crypto_ec = serialization.load_der_public_key(encode_ec_public_key(ec_pub))
    ok(isinstance(crypto_ec.curve, ec.SECP256R1), "EC public key decodes as P-256")
    sig = ec_priv.sign(data, mechanism=Mechanism.ECDSA_SHA256)
    ok(len(sig) == 64, "ECDSA-SHA256 signature r||s, 64 bytes")
    ok(ec_pub.verify(data, sig, mechanism=Mechanism.ECDSA_SHA256), "ECDSA-SHA256 verified on the token")
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    crypto_ec.verify(der, data, ec.ECDSA(hashes.SHA256()))
    ok(True, "ECDSA-SHA256 verified by pyca/cryptography")
    ok(not ec_pub.verify(data, bytes(64), mechanism=Mechanism.ECDSA_SHA256), "a zero signature does not verify")

    # --- wrap / unwrap: a session AES key wrapped under the stored AES key ---
    wrapme = session.generate_key(KeyType.AES, 128, label="py-wrapped",
                                  template={Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: True})
    wrapped = aes.wrap_key(wrapme, mechanism=Mechanism.AES_KEY_WRAP)
    ok(len(wrapped) == 24, "AES-KEY-WRAP of a 128-bit key: 24 bytes")
    unwrapped = aes.unwrap_key(ObjectClass.SECRET_KEY, KeyType.AES, wrapped, mechanism=Mechanism.AES_KEY_WRAP,
                               label="py-unwrapped", template={Attribute.ENCRYPT: True, Attribute.DECRYPT: True})
    ct = wrapme.encrypt(data, mechanism_param=iv)
    ok(unwrapped.decrypt(ct, mechanism_param=iv) == data, "the unwrapped key decrypts what the original encrypted")

    # --- attributes and search ---
    aes[Attribute.LABEL] = "py-aes-renamed"
    found = session.get_key(label="py-aes-renamed")
    ok(found[Attribute.ID] == b"\x10", "label changed with C_SetAttributeValue, key found by it")
    privs = sorted(o[Attribute.LABEL] for o in session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY}))
    ok(privs == ["py-ec", "py-rsa"], f"private keys found by class: {privs}")
    ok(session.get_key(object_class=ObjectClass.PUBLIC_KEY, id=b"\x11")[Attribute.MODULUS_BITS] == 2048,
       "public key found by CKA_ID")
    digest = session.digest(data, mechanism=Mechanism.SHA256)
    h = hashes.Hash(hashes.SHA256())
    h.update(data)
    ok(digest == h.finalize(), "C_Digest SHA-256 equals pyca's")

# Token objects outlive the session; session objects do not.
with token.open(user_pin=pin) as session:
    labels = sorted(o[Attribute.LABEL] for o in session.get_objects({Attribute.TOKEN: True}))
    ok("py-aes-renamed" in labels and "py-rsa" in labels and "py-ec" in labels, "token objects persist")
    ok(not any(lbl in labels for lbl in ("py-known", "py-wrapped", "py-unwrapped")), "session objects are gone")
    try:
        session.get_key(label="py-aes-renamed").destroy()
        ok(False, "C_DestroyObject refused in a read-only session")
    except SessionReadOnly:
        ok(True, "C_DestroyObject refused in a read-only session")
with token.open(user_pin=pin, rw=True) as session:
    session.get_key(label="py-aes-renamed").destroy()
    ok(not list(session.get_objects({Attribute.LABEL: "py-aes-renamed"})), "C_DestroyObject in a read-write session")

print("python-pkcs11: all ok")
