#!/usr/bin/python3
"""The PKCS#11 3.0 calls no Rust or Python binding exposes, made the way a C
application makes them: through C_GetInterface and CK_FUNCTION_LIST_3_0
(ctypes, no headers). C_LoginUser, C_SessionCancel, C_GetObjectSize,
CKU_CONTEXT_SPECIFIC, and the short-buffer case of C_GetAttributeValue.

Usage: ctypes-pkcs11-30.py MODULE   (HSMLINK_CONF set by the caller)
"""
import ctypes as C
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from p11ctypes import *  # noqa: E402,F403
from p11ctypes import fn as p11_fn  # noqa: E402

fl = load(sys.argv[1])


def fn(name, *argtypes):
    return p11_fn(fl, name, *argtypes)


check("C_Initialize", fn("Initialize", P)(None))
slots = (ULONG * 4)()
count = ULONG(4)
check("C_GetSlotList", fn("GetSlotList", C.c_ubyte, P, P)(1, slots, C.byref(count)))
slot = slots[0]

so_pin, pin, new_pin = b"so-pin-1234", b"user-pin-1234", b"user-pin-4321"
label = b"ctypes token".ljust(32)
check("C_InitToken", fn("InitToken", ULONG, P, ULONG, P)(slot, so_pin, len(so_pin), label))
session = HANDLE()
check("C_OpenSession", fn("OpenSession", ULONG, ULONG, P, P, P)(
    slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, None, None, C.byref(session)))
h = session.value

login_user = fn("LoginUser", HANDLE, ULONG, P, ULONG, P, ULONG)
check("C_LoginUser (SO, no user name)", login_user(h, CKU_SO, so_pin, len(so_pin), None, 0))
check("C_InitPIN", fn("InitPIN", HANDLE, P, ULONG)(h, pin, len(pin)))
logout = fn("Logout", HANDLE)
check("C_Logout", logout(h))
check("C_Logout twice", logout(h), CKR_USER_NOT_LOGGED_IN)
check("C_LoginUser (user)", login_user(h, CKU_USER, pin, len(pin), b"", 0))
check("C_SetPIN", fn("SetPIN", HANDLE, P, ULONG, P, ULONG)(h, pin, len(pin), new_pin, len(new_pin)))
print("ok - C_LoginUser for SO and user")

# A data object, and C_GetObjectSize on it.
cls, token, value = ULONG(CKO_DATA), C.c_ubyte(1), C.create_string_buffer(b"object-size-probe", 17)
template = (Attribute * 3)(
    Attribute(CKA_CLASS, C.cast(C.pointer(cls), P), C.sizeof(cls)),
    Attribute(CKA_TOKEN, C.cast(C.pointer(token), P), 1),
    Attribute(CKA_VALUE, C.cast(value, P), 17),
)
obj = HANDLE()
check("C_CreateObject", fn("CreateObject", HANDLE, P, ULONG, P)(h, template, 3, C.byref(obj)))
size = ULONG(0)
check("C_GetObjectSize", fn("GetObjectSize", HANDLE, HANDLE, P)(h, obj.value, C.byref(size)))
assert size.value == UNAVAILABLE or size.value >= 17, size.value
print(f"ok - C_GetObjectSize ({size.value})")

# C_GetAttributeValue with a buffer one byte short: too small, length unavailable.
short = C.create_string_buffer(16)
query = (Attribute * 1)(Attribute(CKA_VALUE, C.cast(short, P), 16))
get = fn("GetAttributeValue", HANDLE, HANDLE, P, ULONG)
check("C_GetAttributeValue (short)", get(h, obj.value, query, 1), CKR_BUFFER_TOO_SMALL)
assert query[0].len == UNAVAILABLE, query[0].len
query[0].value, query[0].len = None, 0
check("C_GetAttributeValue (length)", get(h, obj.value, query, 1))
assert query[0].len == 17, query[0].len
print("ok - C_GetAttributeValue: short buffer, then the length")

# C_SessionCancel ends an active search.
check("C_FindObjectsInit", fn("FindObjectsInit", HANDLE, P, ULONG)(h, None, 0))
check("C_SessionCancel", fn("SessionCancel", HANDLE, ULONG)(h, CKF_FIND_OBJECTS))
found, n = (HANDLE * 4)(), ULONG(0)
check("C_FindObjects after cancel", fn("FindObjects", HANDLE, P, ULONG, P)(h, found, 4, C.byref(n)),
      CKR_OPERATION_NOT_INITIALIZED)
print("ok - C_SessionCancel ends the search")

# Context-specific login has no operation to authorise here.
check("C_Login(CKU_CONTEXT_SPECIFIC)", fn("Login", HANDLE, ULONG, P, ULONG)(
    h, CKU_CONTEXT_SPECIFIC, new_pin, len(new_pin)), CKR_OPERATION_NOT_INITIALIZED)
print("ok - CKU_CONTEXT_SPECIFIC without an operation")

check("C_Finalize", fn("Finalize", P)(None))
print("ctypes PKCS#11 3.0 calls: all ok")
