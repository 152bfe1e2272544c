#!/usr/bin/python3
"""A tenant types in another tenant's object handles: every object call must
answer CKR_OBJECT_HANDLE_INVALID. Raw handle values are what C applications
pass, and what the safe bindings do not let a caller make up.

Usage: ctypes-foreign-handles.py MODULE USER_PIN HANDLE...   (HSMLINK_CONF set)
"""
import ctypes as C
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from p11ctypes import *  # noqa: E402,F403
from p11ctypes import fn as p11_fn  # noqa: E402

CKR_OBJECT_HANDLE_INVALID = 0x82

fl = load(sys.argv[1])
pin = sys.argv[2].encode()
handles = [int(h) for h in sys.argv[3:]]


def fn(name, *argtypes):
    return p11_fn(fl, name, *argtypes)


check("C_Initialize", fn("Initialize", P)(None))
slots, count = (ULONG * 4)(), ULONG(4)
check("C_GetSlotList", fn("GetSlotList", C.c_ubyte, P, P)(1, slots, C.byref(count)))
session = HANDLE()
check("C_OpenSession", fn("OpenSession", ULONG, ULONG, P, P, P)(
    slots[0], CKF_SERIAL_SESSION | CKF_RW_SESSION, None, None, C.byref(session)))
h = session.value
check("C_Login", fn("Login", HANDLE, ULONG, P, ULONG)(h, CKU_USER, pin, len(pin)))

label = C.create_string_buffer(b"owned", 5)
for handle in handles:
    read = (Attribute * 1)(Attribute(CKA_LABEL, None, 0))
    check(f"C_GetAttributeValue({handle})",
          fn("GetAttributeValue", HANDLE, HANDLE, P, ULONG)(h, handle, read, 1),
          CKR_OBJECT_HANDLE_INVALID)
    write = (Attribute * 1)(Attribute(CKA_LABEL, C.cast(label, P), 5))
    check(f"C_SetAttributeValue({handle})",
          fn("SetAttributeValue", HANDLE, HANDLE, P, ULONG)(h, handle, write, 1),
          CKR_OBJECT_HANDLE_INVALID)
    copy = HANDLE()
    check(f"C_CopyObject({handle})",
          fn("CopyObject", HANDLE, HANDLE, P, ULONG, P)(h, handle, None, 0, C.byref(copy)),
          CKR_OBJECT_HANDLE_INVALID)
    check(f"C_DestroyObject({handle})",
          fn("DestroyObject", HANDLE, HANDLE)(h, handle),
          CKR_OBJECT_HANDLE_INVALID)
    size = ULONG(0)
    check(f"C_GetObjectSize({handle})",
          fn("GetObjectSize", HANDLE, HANDLE, P)(h, handle, C.byref(size)),
          CKR_OBJECT_HANDLE_INVALID)
print(f"ok - {len(handles)} foreign handles are invalid for every object call")
check("C_Finalize", fn("Finalize", P)(None))
