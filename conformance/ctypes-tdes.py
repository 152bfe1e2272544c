#!/usr/bin/python3
"""TDES MACs and IV checks through the module, as a C application drives
them (ctypes; no binding names CKM_DES3_CMAC or CKM_DES3_MAC): CMAC against
NIST SP 800-38B appendix D.4/D.5, the ISO 9797-1 CBC-MAC against the NIST
TDES CBC example and `openssl enc`, the `_GENERAL` lengths, verification
codes, and the IV lengths of CKM_DES3_CBC(_PAD).

Usage: ctypes-tdes.py MODULE   (HSMLINK_CONF set by the caller)
Run by tests/tests/tdes.rs.
"""
import ctypes as C
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from p11ctypes import *  # noqa: E402,F403
from p11ctypes import fn as p11_fn  # noqa: E402

fl = load(sys.argv[1])


def fn(name, *argtypes):
    return p11_fn(fl, name, *argtypes)


CKO_SECRET_KEY, CKK_DES2, CKK_DES3 = 0x4, 0x14, 0x15
CKA_KEY_TYPE, CKA_ENCRYPT, CKA_SIGN, CKA_VERIFY = 0x100, 0x104, 0x108, 0x10A
CKM_DES3_CBC, CKM_DES3_MAC, CKM_DES3_MAC_GENERAL = 0x133, 0x134, 0x135
CKM_DES3_CBC_PAD, CKM_DES3_CMAC_GENERAL, CKM_DES3_CMAC = 0x136, 0x137, 0x138
CKR_MECHANISM_PARAM_INVALID = 0x71
CKR_SIGNATURE_INVALID, CKR_SIGNATURE_LEN_RANGE = 0xC0, 0xC1


class Mechanism(C.Structure):
    _fields_ = [("mechanism", ULONG), ("parameter", C.c_void_p), ("len", ULONG)]


def plain(kind):
    return Mechanism(kind, None, 0)


_keep = []


def general(kind, length):
    param = ULONG(length)
    _keep.append(param)
    return Mechanism(kind, C.cast(C.pointer(param), C.c_void_p), C.sizeof(param))


def with_iv(kind, iv):
    buf = C.create_string_buffer(iv, max(len(iv), 1))
    _keep.append(buf)
    return Mechanism(kind, C.cast(buf, C.c_void_p), len(iv))


check("C_Initialize", fn("Initialize", P)(None))
slots, count = (ULONG * 4)(), ULONG(4)
check("C_GetSlotList", fn("GetSlotList", C.c_ubyte, P, P)(1, slots, C.byref(count)))
slot = slots[0]
so_pin, pin, new_pin = b"so-pin-1234", b"user-pin-1234", b"user-pin-4321"
check("C_InitToken", fn("InitToken", ULONG, P, ULONG, P)(slot, so_pin, len(so_pin), b"tdes".ljust(32)))
session = HANDLE()
check("C_OpenSession", fn("OpenSession", ULONG, ULONG, P, P, P)(
    slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, None, None, C.byref(session)))
h = session.value
login = fn("Login", HANDLE, ULONG, P, ULONG)
check("SO login", login(h, CKU_SO, so_pin, len(so_pin)))
check("C_InitPIN", fn("InitPIN", HANDLE, P, ULONG)(h, pin, len(pin)))
check("C_Logout", fn("Logout", HANDLE)(h))
check("user login", login(h, CKU_USER, pin, len(pin)))
check("C_SetPIN", fn("SetPIN", HANDLE, P, ULONG, P, ULONG)(h, pin, len(pin), new_pin, len(new_pin)))


def secret_key(key_type, value):
    cls, ktype, no, yes = ULONG(CKO_SECRET_KEY), ULONG(key_type), C.c_ubyte(0), C.c_ubyte(1)
    buf = C.create_string_buffer(value, len(value))
    template = (Attribute * 7)(
        Attribute(CKA_CLASS, C.cast(C.pointer(cls), P), C.sizeof(cls)),
        Attribute(CKA_KEY_TYPE, C.cast(C.pointer(ktype), P), C.sizeof(ktype)),
        Attribute(CKA_TOKEN, C.cast(C.pointer(no), P), 1),
        Attribute(CKA_ENCRYPT, C.cast(C.pointer(yes), P), 1),
        Attribute(CKA_SIGN, C.cast(C.pointer(yes), P), 1),
        Attribute(CKA_VERIFY, C.cast(C.pointer(yes), P), 1),
        Attribute(CKA_VALUE, C.cast(buf, P), len(value)),
    )
    key = HANDLE()
    check("C_CreateObject", fn("CreateObject", HANDLE, P, ULONG, P)(h, template, 7, C.byref(key)))
    return key.value


sign_init = fn("SignInit", HANDLE, P, HANDLE)
sign = fn("Sign", HANDLE, P, ULONG, P, P)
sign_update = fn("SignUpdate", HANDLE, P, ULONG)
sign_final = fn("SignFinal", HANDLE, P, P)
verify_init = fn("VerifyInit", HANDLE, P, HANDLE)
verify = fn("Verify", HANDLE, P, ULONG, P, ULONG)
encrypt_init = fn("EncryptInit", HANDLE, P, HANDLE)


def mac(mech, key, data):
    """Single-part C_Sign (with the length query) and multi-part, which must agree."""
    check("C_SignInit", sign_init(h, C.byref(mech), key))
    size = ULONG(0)
    check("C_Sign (length)", sign(h, data, len(data), None, C.byref(size)))
    out = C.create_string_buffer(size.value)
    check("C_Sign", sign(h, data, len(data), out, C.byref(size)))
    single = out.raw[: size.value]
    check("C_SignInit", sign_init(h, C.byref(mech), key))
    for i in range(0, len(data), 5):
        check("C_SignUpdate", sign_update(h, data[i:i + 5], len(data[i:i + 5])))
    out2, size2 = C.create_string_buffer(16), ULONG(16)
    check("C_SignFinal", sign_final(h, out2, C.byref(size2)))
    assert out2.raw[: size2.value] == single, (single.hex(), out2.raw[: size2.value].hex())
    return single


def verify_code(mech, key, data, signature):
    check("C_VerifyInit", verify_init(h, C.byref(mech), key))
    return verify(h, data, len(data), signature, len(signature))


M = bytes.fromhex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51")

# NIST SP 800-38B appendix D.4 (three-key TDEA) and D.5 (two-key TDEA).
three = secret_key(CKK_DES3, bytes.fromhex("8aa83bf8cbda10620bc1bf19fbb6cd58bc313d4a371ca8b5"))
two = secret_key(CKK_DES2, bytes.fromhex("4cf15134a2850dd58a3d10ba80570d38"))
for key, length, want in [
    (three, 0, "b7a688e122ffaf95"), (three, 8, "8e8f293136283797"),
    (three, 20, "743ddbe0ce2dc2ed"), (three, 32, "33e6b1092400eae5"),
    (two, 0, "bd2ebf9a3ba00361"), (two, 8, "4ff2ab813c53ce83"),
    (two, 20, "62dd1b471902bd4e"), (two, 32, "31b1e431dabc4eb8"),
]:
    got = mac(plain(CKM_DES3_CMAC), key, M[:length])
    assert got.hex() == want, (length, got.hex(), want)
    check("CMAC verifies", verify_code(plain(CKM_DES3_CMAC), key, M[:length], got))
got = mac(general(CKM_DES3_CMAC_GENERAL, 4), three, M)
assert got.hex() == "33e6b109", got.hex()
print("ok - CKM_DES3_CMAC(_GENERAL) equals SP 800-38B D.4 and D.5")

# ISO 9797-1 MAC algorithm 1: with a zero IV over (P1 ^ IV) || P2 || P3 || P4
# it is the last block of the NIST TDES CBC example (keying option 1).
k3 = secret_key(CKK_DES3, bytes.fromhex("0123456789abcdef23456789abcdef01456789abcdef0123"))
iv = bytes.fromhex("f69f2445df4f9b17")
m1 = bytes(a ^ b for a, b in zip(M[:8], iv)) + M[8:]
assert mac(plain(CKM_DES3_MAC), k3, m1).hex() == "73c0bda8"
assert mac(general(CKM_DES3_MAC_GENERAL, 8), k3, m1).hex() == "73c0bda85c8e0da7"
assert mac(general(CKM_DES3_MAC_GENERAL, 2), k3, m1).hex() == "73c0"
# Padding method 1 (zero bytes), against openssl enc over the padded data.
odd = M[:13]
ossl = subprocess.run(
    ["openssl", "enc", "-des-ede3-cbc", "-K", "0123456789abcdef23456789abcdef01456789abcdef0123",
     "-iv", "0000000000000000", "-nopad"],
    input=odd + bytes(3), capture_output=True, check=True).stdout
assert mac(general(CKM_DES3_MAC_GENERAL, 8), k3, odd) == ossl[-8:], ossl.hex()
print("ok - CKM_DES3_MAC(_GENERAL) equals the TCBC example and openssl enc")

good = mac(plain(CKM_DES3_MAC), k3, odd)
assert len(good) == 4
check("CBC-MAC verifies", verify_code(plain(CKM_DES3_MAC), k3, odd, good))
bad = bytes([good[0] ^ 1]) + good[1:]
check("a changed MAC", verify_code(plain(CKM_DES3_MAC), k3, odd, bad), CKR_SIGNATURE_INVALID)
check("a MAC of the wrong length", verify_code(plain(CKM_DES3_MAC), k3, odd, ossl[-8:]),
      CKR_SIGNATURE_LEN_RANGE)


def sign_outcome(mech, key):
    """The code of C_SignInit, or, the init being deferred to the server
    (pkcs11-module/src/client/deferred.rs), of the C_Sign that carries it."""
    rv = sign_init(h, C.byref(mech), key)
    if rv != CKR_OK:
        return rv
    out, size = C.create_string_buffer(16), ULONG(16)
    return sign(h, M, 8, out, C.byref(size))


for length in (0, 9):
    check(f"MAC_GENERAL length {length}",
          sign_outcome(general(CKM_DES3_MAC_GENERAL, length), k3), CKR_MECHANISM_PARAM_INVALID)
    check(f"CMAC_GENERAL length {length}",
          sign_outcome(general(CKM_DES3_CMAC_GENERAL, length), k3), CKR_MECHANISM_PARAM_INVALID)
# An error ends the operation: a new init is accepted.
check("MAC_GENERAL length 8", sign_outcome(general(CKM_DES3_MAC_GENERAL, 8), k3))
print("ok - verification and _GENERAL length codes")

for kind in (CKM_DES3_CBC, CKM_DES3_CBC_PAD):
    for iv_len in (0, 7, 16):
        check(f"{kind:#x} with a {iv_len}-byte IV",
              encrypt_init(h, C.byref(with_iv(kind, bytes(iv_len))), k3),
              CKR_MECHANISM_PARAM_INVALID)
    check(f"{kind:#x} with an 8-byte IV", encrypt_init(h, C.byref(with_iv(kind, iv)), k3))
    out, out_len = C.create_string_buffer(16), ULONG(16)
    check("C_Encrypt", fn("Encrypt", HANDLE, P, ULONG, P, P)(h, M, 8, out, C.byref(out_len)))
print("ok - IV lengths")

check("C_Finalize", fn("Finalize", P)(None))
print("ok - all")
