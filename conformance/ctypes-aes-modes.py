#!/usr/bin/python3
"""AES modes through the module, as a C application drives them (ctypes),
checked against independent implementations: AES-CTR against `openssl enc`,
AES-GCM against pyca/cryptography; and the output-buffer lifecycle of the
standard (length query, CKR_BUFFER_TOO_SMALL, errors ending the operation)
through the real .so.

Usage: ctypes-aes-modes.py MODULE   (HSMLINK_CONF set by the caller)
"""
import ctypes as C
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from p11ctypes import *  # noqa: E402,F403
from p11ctypes import fn as p11_fn  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402

fl = load(sys.argv[1])


def fn(name, *argtypes):
    return p11_fn(fl, name, *argtypes)


CKO_SECRET_KEY, CKK_AES = 0x4, 0x1F
CKA_KEY_TYPE, CKA_ENCRYPT, CKA_DECRYPT = 0x100, 0x104, 0x105
CKM_AES_CBC, CKM_AES_CBC_PAD, CKM_AES_CTR, CKM_AES_GCM = 0x1082, 0x1085, 0x1086, 0x1087
CKR_ENCRYPTED_DATA_LEN_RANGE = 0x41

KEY = bytes(range(32))
MESSAGE = b"AES through hsmlink, checked by other implementations"


class Mechanism(C.Structure):
    _fields_ = [("mechanism", ULONG), ("parameter", C.c_void_p), ("len", ULONG)]


class CtrParams(C.Structure):
    _fields_ = [("counter_bits", ULONG), ("cb", C.c_ubyte * 16)]


class GcmParams(C.Structure):
    _fields_ = [("iv", C.c_void_p), ("iv_len", ULONG), ("iv_bits", ULONG),
                ("aad", C.c_void_p), ("aad_len", ULONG), ("tag_bits", ULONG)]


def mechanism(kind, params=None):
    if params is None:
        return Mechanism(kind, None, 0)
    return Mechanism(kind, C.cast(C.pointer(params), C.c_void_p), C.sizeof(params))


check("C_Initialize", fn("Initialize", P)(None))
slots, count = (ULONG * 4)(), ULONG(4)
check("C_GetSlotList", fn("GetSlotList", C.c_ubyte, P, P)(1, slots, C.byref(count)))
slot = slots[0]
so_pin, pin, new_pin = b"so-pin-1234", b"user-pin-1234", b"user-pin-4321"
check("C_InitToken", fn("InitToken", ULONG, P, ULONG, P)(slot, so_pin, len(so_pin), b"aes".ljust(32)))
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

cls, ktype, no, yes = ULONG(CKO_SECRET_KEY), ULONG(CKK_AES), C.c_ubyte(0), C.c_ubyte(1)
value = C.create_string_buffer(KEY, len(KEY))
template = (Attribute * 6)(
    Attribute(CKA_CLASS, C.cast(C.pointer(cls), P), C.sizeof(cls)),
    Attribute(CKA_KEY_TYPE, C.cast(C.pointer(ktype), P), C.sizeof(ktype)),
    Attribute(CKA_TOKEN, C.cast(C.pointer(no), P), 1),
    Attribute(CKA_ENCRYPT, C.cast(C.pointer(yes), P), 1),
    Attribute(CKA_DECRYPT, C.cast(C.pointer(yes), P), 1),
    Attribute(CKA_VALUE, C.cast(value, P), len(KEY)),
)
key = HANDLE()
check("C_CreateObject (AES key)", fn("CreateObject", HANDLE, P, ULONG, P)(h, template, 6, C.byref(key)))

encrypt_init = fn("EncryptInit", HANDLE, P, HANDLE)
encrypt = fn("Encrypt", HANDLE, P, ULONG, P, P)
decrypt_init = fn("DecryptInit", HANDLE, P, HANDLE)
decrypt = fn("Decrypt", HANDLE, P, ULONG, P, P)


def run_encrypt(mech, data):
    check("C_EncryptInit", encrypt_init(h, C.byref(mech), key.value))
    out_len = ULONG(0)
    check("C_Encrypt (length)", encrypt(h, data, len(data), None, C.byref(out_len)))
    out = C.create_string_buffer(out_len.value)
    check("C_Encrypt", encrypt(h, data, len(data), out, C.byref(out_len)))
    return out.raw[: out_len.value]


# AES-CTR (128-bit counter) against openssl enc.
counter = bytes(range(0xF0, 0x100))
ctr = CtrParams(128, (C.c_ubyte * 16)(*counter))
token_ctr = run_encrypt(mechanism(CKM_AES_CTR, ctr), MESSAGE)
openssl_ctr = subprocess.run(
    ["openssl", "enc", "-aes-256-ctr", "-K", KEY.hex(), "-iv", counter.hex()],
    input=MESSAGE, capture_output=True, check=True).stdout
assert token_ctr == openssl_ctr, (token_ctr.hex(), openssl_ctr.hex())
print("ok - AES-CTR equals openssl enc -aes-256-ctr")

# AES-GCM with AAD against pyca/cryptography.
iv, aad = bytes(range(12)), b"associated data"
iv_buf, aad_buf = C.create_string_buffer(iv, 12), C.create_string_buffer(aad, len(aad))
gcm = GcmParams(C.cast(iv_buf, P), 12, 96, C.cast(aad_buf, P), len(aad), 128)
token_gcm = run_encrypt(mechanism(CKM_AES_GCM, gcm), MESSAGE)
assert token_gcm == AESGCM(KEY).encrypt(iv, MESSAGE, aad), token_gcm.hex()
print("ok - AES-GCM equals pyca/cryptography")

# The lifecycle of section 5.2 through the .so.
iv16 = C.create_string_buffer(bytes(16), 16)
cbc_pad = Mechanism(CKM_AES_CBC_PAD, C.cast(iv16, P), 16)
check("C_EncryptInit (CBC_PAD)", encrypt_init(h, C.byref(cbc_pad), key.value))
needed = ULONG(0)
check("length query", encrypt(h, MESSAGE, len(MESSAGE), None, C.byref(needed)))
assert needed.value == (len(MESSAGE) // 16 + 1) * 16, needed.value
short, short_len = C.create_string_buffer(needed.value - 1), ULONG(needed.value - 1)
check("short buffer", encrypt(h, MESSAGE, len(MESSAGE), short, C.byref(short_len)), CKR_BUFFER_TOO_SMALL)
assert short_len.value == needed.value, short_len.value
full, full_len = C.create_string_buffer(needed.value), ULONG(needed.value)
check("the operation survived both", encrypt(h, MESSAGE, len(MESSAGE), full, C.byref(full_len)))
check("a finished operation is gone", encrypt(h, MESSAGE, len(MESSAGE), full, C.byref(full_len)),
      CKR_OPERATION_NOT_INITIALIZED)
print("ok - length query and CKR_BUFFER_TOO_SMALL keep the operation, success ends it")

cbc = Mechanism(CKM_AES_CBC, C.cast(iv16, P), 16)
check("C_DecryptInit (CBC)", decrypt_init(h, C.byref(cbc), key.value))
out, out_len = C.create_string_buffer(64), ULONG(64)
check("15 bytes of CBC ciphertext", decrypt(h, b"x" * 15, 15, out, C.byref(out_len)),
      CKR_ENCRYPTED_DATA_LEN_RANGE)
check("an error ends the operation", decrypt(h, b"x" * 16, 16, out, C.byref(out_len)),
      CKR_OPERATION_NOT_INITIALIZED)
print("ok - any other error ends the operation")

check("C_Finalize", fn("Finalize", P)(None))
print("ctypes AES modes: all ok")
