"""A TR-34 (ASC X9 TR 34-2019) key distribution host, for hsmlink's tests.

An independent implementation of the sending side: the ASN.1 is built with
asn1crypto, the cryptography (RSA-OAEP, RSA PKCS#1 v1.5 signatures, TDES and
AES) is pyca/cryptography's; neither shares code with hsmlink.

  tr34_kdh.py subject CERT.pem
      prints the DER of the certificate's subject, in hex
  tr34_kdh.py token --kdh-cert C --kdh-key K --krd-modulus HEX
      --krd-exponent HEX --key HEX --header ASCII --out FILE
      [--nonce HEX | --signing-time UNIX] [--cipher tdes|aes128]
      [--crl CRL.der] [--with-certificate] [--block-kdh-serial N]
      [--block-header ASCII]
      writes a key token (DER ContentInfo of SignedData of EnvelopedData)
"""

import argparse
import datetime
import hashlib
import os
import sys

from asn1crypto import algos, cms, core, crl, x509
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import padding as rsa_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

try:  # cryptography >= 43 keeps TDES among the "decrepit" ciphers
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # pragma: no cover
    TripleDES = algorithms.TripleDES

ID_DATA = "1.2.840.113549.1.7.1"
ID_RANDOM_NONCE = "1.2.840.113549.1.9.25.3"


class OctetStrings(core.SetOf):
    _child_spec = core.OctetString


class HeaderAttr(core.Sequence):
    """The key block header as an attribute: id-data, SET OF OCTET STRING."""

    _fields = [("type", core.ObjectIdentifier), ("values", OctetStrings)]


class KeyBlock(core.Sequence):
    """TR-34 2019 section 5.4.9."""

    _fields = [
        ("version", core.Integer),
        ("id_kdh", cms.IssuerAndSerialNumber),
        ("clear_key", core.OctetString),
        ("header", HeaderAttr),
    ]


def load_cert(path):
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith(b"-----"):
        from asn1crypto import pem

        _, _, data = pem.unarmor(data)
    return x509.Certificate.load(data)


def subject(args):
    print(load_cert(args.cert).subject.dump().hex())


def _attr(oid, value):
    """DER of Attribute ::= SEQUENCE { type, SET OF value } with one value."""
    oid_der = core.ObjectIdentifier(oid).dump()
    inner = value.dump()
    set_der = b"\x31" + _len(len(inner)) + inner
    body = oid_der + set_der
    return b"\x30" + _len(len(body)) + body


def _seq(body):
    return b"\x30" + _len(len(body)) + body


def _explicit0(inner):
    return b"\xa0" + _len(len(inner)) + inner


def _len(n):
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def token(args):
    kdh_cert = load_cert(args.kdh_cert)
    with open(args.kdh_key, "rb") as f:
        kdh_key = serialization.load_pem_private_key(f.read(), password=None)
    kdh_id = cms.IssuerAndSerialNumber(
        {"issuer": kdh_cert.issuer, "serial_number": kdh_cert.serial_number}
    )
    block_id = kdh_id
    if args.block_kdh_serial is not None:
        block_id = cms.IssuerAndSerialNumber(
            {"issuer": kdh_cert.issuer, "serial_number": args.block_kdh_serial}
        )
    header = args.header.encode("ascii")
    block_header = (args.block_header or args.header).encode("ascii")
    block = KeyBlock(
        {
            "version": 1,
            "id_kdh": block_id,
            "clear_key": bytes.fromhex(args.key),
            "header": {"type": ID_DATA, "values": [block_header]},
        }
    ).dump()

    # Content encryption under an ephemeral key, PKCS#7 padding.
    if args.cipher == "tdes":
        cek, iv, alg, oid = os.urandom(24), os.urandom(8), TripleDES, "tripledes_3key"
    else:
        cek, iv, alg, oid = os.urandom(16), os.urandom(16), algorithms.AES, "aes128_cbc"
    padder = padding.PKCS7(alg.block_size).padder()
    padded = padder.update(block) + padder.finalize()
    enc = Cipher(alg(cek), modes.CBC(iv)).encryptor()
    encrypted = enc.update(padded) + enc.finalize()

    # The ephemeral key to the KRD with RSAES-OAEP (SHA-256, MGF1-SHA-256).
    krd = rsa.RSAPublicNumbers(int(args.krd_exponent, 16), int(args.krd_modulus, 16)).public_key()
    encrypted_key = krd.encrypt(
        cek,
        rsa_padding.OAEP(
            mgf=rsa_padding.MGF1(algorithm=hashes.SHA256()),
            algorithm=hashes.SHA256(),
            label=None,
        ),
    )
    enveloped = cms.EnvelopedData(
        {
            "version": "v0",
            "recipient_infos": [
                cms.RecipientInfo(
                    name="ktri",
                    value=cms.KeyTransRecipientInfo(
                        {
                            "version": "v0",
                            "rid": cms.RecipientIdentifier(
                                name="issuer_and_serial_number", value=kdh_id
                            ),
                            "key_encryption_algorithm": {
                                "algorithm": "rsaes_oaep",
                                "parameters": algos.RSAESOAEPParams(
                                    {
                                        "hash_algorithm": {"algorithm": "sha256"},
                                        "mask_gen_algorithm": {
                                            "algorithm": "mgf1",
                                            "parameters": {"algorithm": "sha256"},
                                        },
                                    }
                                ),
                            },
                            "encrypted_key": encrypted_key,
                        }
                    ),
                )
            ],
            "encrypted_content_info": {
                "content_type": "data",
                "content_encryption_algorithm": {
                    "algorithm": oid,
                    "parameters": core.OctetString(iv),
                },
                "encrypted_content": encrypted,
            },
        }
    ).dump()

    # Signed attributes, in DER order (SET OF sorted by encoding).
    attrs = [
        _attr("1.2.840.113549.1.9.3", core.ObjectIdentifier("1.2.840.113549.1.7.3")),
        _attr(ID_DATA, core.OctetString(header)),
        _attr("1.2.840.113549.1.9.4", core.OctetString(hashlib.sha256(enveloped).digest())),
    ]
    if args.nonce:
        attrs.append(_attr(ID_RANDOM_NONCE, core.OctetString(bytes.fromhex(args.nonce))))
    else:
        when = datetime.datetime.fromtimestamp(
            args.signing_time if args.signing_time is not None else datetime.datetime.now().timestamp(),
            tz=datetime.timezone.utc,
        )
        attrs.append(_attr("1.2.840.113549.1.9.5", x509.Time(name="utc_time", value=when)))
    attrs.sort()
    body = b"".join(attrs)
    signed_attrs_der = b"\x31" + _len(len(body)) + body
    signature = kdh_key.sign(signed_attrs_der, rsa_padding.PKCS1v15(), hashes.SHA256())

    signed_attrs = cms.CMSAttributes.load(signed_attrs_der)
    signer = cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier(name="issuer_and_serial_number", value=kdh_id),
            "digest_algorithm": {"algorithm": "sha256"},
            "signed_attrs": signed_attrs,
            "signature_algorithm": {"algorithm": "rsassa_pkcs1v15"},
            "signature": signature,
        }
    )
    signed = {
        "version": "v1",
        "digest_algorithms": [{"algorithm": "sha256"}],
        # RFC 5652: eContent is an OCTET STRING holding the EnvelopedData
        # (asn1crypto would nest the structure itself, PKCS#7 1.5 style).
        "encap_content_info": cms.ContentInfo.load(
            _seq(
                core.ObjectIdentifier("1.2.840.113549.1.7.3").dump()
                + _explicit0(core.OctetString(enveloped).dump())
            )
        ),
        "signer_infos": [signer],
    }
    if args.with_certificate:
        signed["certificates"] = [kdh_cert]
    if args.crl:
        with open(args.crl, "rb") as f:
            signed["crls"] = [crl.CertificateList.load(f.read())]
    info = cms.ContentInfo({"content_type": "signed_data", "content": cms.SignedData(signed)})
    with open(args.out, "wb") as f:
        f.write(info.dump())


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("subject")
    s.add_argument("cert")
    s.set_defaults(run=subject)
    t = sub.add_parser("token")
    t.add_argument("--kdh-cert", required=True)
    t.add_argument("--kdh-key", required=True)
    t.add_argument("--krd-modulus", required=True)
    t.add_argument("--krd-exponent", required=True)
    t.add_argument("--key", required=True)
    t.add_argument("--header", required=True)
    t.add_argument("--block-header")
    t.add_argument("--block-kdh-serial", type=int)
    t.add_argument("--nonce")
    t.add_argument("--signing-time", type=float)
    t.add_argument("--cipher", choices=["tdes", "aes128"], default="tdes")
    t.add_argument("--crl")
    t.add_argument("--with-certificate", action="store_true")
    t.add_argument("--out", required=True)
    t.set_defaults(run=token)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    sys.exit(main())
