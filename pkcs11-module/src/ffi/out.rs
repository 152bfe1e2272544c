//! Outputs written into the caller's memory.
//!
//! [`OutBuf`] is the rule of section 5.2 for variable-length outputs, in one
//! place: a NULL buffer asks for the length only (`CKR_OK`), a buffer too
//! small gets `CKR_BUFFER_TOO_SMALL`, and in every case the required length
//! is written back. [`OutRef`] is a fixed-size output (`CK_INFO`, ...),
//! [`OutArray`] an array of a capacity fixed by the caller whose count is
//! reported elsewhere (`C_FindObjects`).
//!
//! Neither requires the caller's pointers to be aligned: they are read and
//! written with unaligned accesses.

use std::marker::PhantomData;
use std::mem::size_of_val;

use cryptoki_sys::{CK_ULONG, CKR_ARGUMENTS_BAD, CKR_BUFFER_TOO_SMALL, CKR_GENERAL_ERROR};

use crate::error::Error;

/// A variable-length output: the caller's buffer (or NULL) and its length
/// in-out parameter.
pub struct OutBuf<'a, T> {
    buf: *mut T,
    /// `*len` on entry: how many `T` the buffer holds.
    capacity: CK_ULONG,
    len: *mut CK_ULONG,
    _caller: PhantomData<&'a mut T>,
}

impl<T: Copy> OutBuf<'_, T> {
    /// Takes the caller's `(buf, len)` pair; a NULL `len` is `CKR_ARGUMENTS_BAD`.
    ///
    /// # Safety
    /// `len` is NULL or valid for reading and writing one `CK_ULONG`; `buf` is
    /// NULL or valid for writing `*len` values of `T`. Both stay valid, and
    /// nothing else accesses them, while the `OutBuf` lives.
    pub unsafe fn from_raw(buf: *mut T, len: *mut CK_ULONG) -> Result<Self, Error> {
        if len.is_null() {
            return Err(Error::new(CKR_ARGUMENTS_BAD));
        }
        // SAFETY: `len` is non-NULL and valid for reads (this function's
        // contract); the read does not need alignment.
        let capacity = unsafe { len.read_unaligned() };
        Ok(Self {
            buf,
            capacity,
            len,
            _caller: PhantomData,
        })
    }

    /// The caller's capacity in values of `T`, `None` for a length query
    /// (NULL buffer). Later calls turn this into the wire's `OutputSpec`.
    #[allow(dead_code)] // used by the byte outputs of later issues
    pub fn capacity(&self) -> Option<CK_ULONG> {
        (!self.buf.is_null()).then_some(self.capacity)
    }

    /// Delivers `items` by the rule of section 5.2.
    pub fn write(self, items: &[T]) -> Result<(), Error> {
        let needed = CK_ULONG::try_from(items.len()).map_err(|_| Error::new(CKR_GENERAL_ERROR))?;
        let result = if self.buf.is_null() {
            Ok(())
        } else if needed > self.capacity {
            Err(Error::new(CKR_BUFFER_TOO_SMALL))
        } else {
            // SAFETY: `buf` is valid for writing `capacity >= items.len()`
            // values of `T` (from_raw's contract), so for `size_of_val(items)`
            // bytes; bytes need no alignment; `items` is our own memory and
            // cannot overlap the caller's buffer.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    items.as_ptr().cast::<u8>(),
                    self.buf.cast::<u8>(),
                    size_of_val(items),
                );
            }
            Ok(())
        };
        // SAFETY: `len` is non-NULL and valid for writes (from_raw's contract).
        unsafe { self.len.write_unaligned(needed) };
        result
    }
}

/// A fixed-size output: the caller's `T` to fill in.
pub struct OutRef<'a, T> {
    ptr: *mut T,
    _caller: PhantomData<&'a mut T>,
}

impl<T> OutRef<'_, T> {
    /// Takes the caller's pointer; NULL is `CKR_ARGUMENTS_BAD`.
    ///
    /// # Safety
    /// `ptr` is NULL or valid for writing one `T`, and nothing else accesses
    /// it while the `OutRef` lives.
    pub unsafe fn from_raw(ptr: *mut T) -> Result<Self, Error> {
        if ptr.is_null() {
            return Err(Error::new(CKR_ARGUMENTS_BAD));
        }
        Ok(Self {
            ptr,
            _caller: PhantomData,
        })
    }

    pub fn write(self, value: T) {
        // SAFETY: `ptr` is non-NULL and valid for writing one `T`
        // (from_raw's contract); the write does not need alignment.
        unsafe { self.ptr.write_unaligned(value) }
    }
}

/// An array output of a capacity the caller chose, filled with at most that
/// many values (`C_FindObjects`: `phObject`, `ulMaxObjectCount`). How many
/// were written is reported through a separate [`OutRef`].
pub struct OutArray<'a, T> {
    buf: *mut T,
    capacity: usize,
    _caller: PhantomData<&'a mut [T]>,
}

impl<T: Copy> OutArray<'_, T> {
    /// Takes the caller's buffer of `capacity` values; NULL is
    /// `CKR_ARGUMENTS_BAD` (even with capacity 0).
    ///
    /// # Safety
    /// `buf` is NULL or valid for writing `capacity` values of `T`, and
    /// nothing else accesses it while the `OutArray` lives.
    pub unsafe fn from_raw(buf: *mut T, capacity: CK_ULONG) -> Result<Self, Error> {
        if buf.is_null() {
            return Err(Error::new(CKR_ARGUMENTS_BAD));
        }
        Ok(Self {
            buf,
            // A capacity beyond the address space is as good as unlimited.
            capacity: usize::try_from(capacity).unwrap_or(usize::MAX),
            _caller: PhantomData,
        })
    }

    /// Writes `items`; more than the capacity is our bug or the server's
    /// (which was told the capacity): `CKR_DEVICE_ERROR`, nothing written.
    pub fn write(self, items: &[T]) -> Result<(), Error> {
        if items.len() > self.capacity {
            return Err(Error::device());
        }
        // SAFETY: `buf` is valid for writing `capacity >= items.len()` values
        // of `T` (from_raw's contract), so for `size_of_val(items)` bytes;
        // bytes need no alignment; `items` is our own memory and cannot
        // overlap the caller's buffer.
        unsafe {
            std::ptr::copy_nonoverlapping(
                items.as_ptr().cast::<u8>(),
                self.buf.cast::<u8>(),
                size_of_val(items),
            );
        }
        Ok(())
    }
}
