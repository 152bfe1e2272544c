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

use hsmlink_protocol::{Output, OutputSpec};

use super::convert;
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
    /// (NULL buffer).
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

impl OutBuf<'_, u8> {
    /// What to tell the server about this buffer: a length query for a NULL
    /// buffer, its capacity otherwise.
    pub fn spec(&self) -> OutputSpec {
        match self.capacity() {
            None => OutputSpec::LengthQuery,
            Some(capacity) => OutputSpec::Capacity(super::wire(capacity)),
        }
    }

    /// Delivers the server's answer to a call made with [`OutBuf::spec`],
    /// by the rule of section 5.2: the bytes (and their length), or only the
    /// length, which is the answer to a length query (`CKR_OK`) or says the
    /// buffer is too small (`CKR_BUFFER_TOO_SMALL`). The client layer has
    /// checked that the answer fits the question; a length that does not
    /// exceed a given capacity is a broken peer and writes nothing.
    pub fn deliver(self, output: Output) -> Result<(), Error> {
        match output {
            Output::Data(bytes) => self.write(bytes.as_bytes()),
            Output::Length(needed) => {
                let needed = convert::ulong(needed)?;
                if !self.buf.is_null() && needed <= self.capacity {
                    return Err(Error::device());
                }
                // SAFETY: `len` is non-NULL and valid for writes (from_raw's contract).
                unsafe { self.len.write_unaligned(needed) };
                if self.buf.is_null() {
                    Ok(())
                } else {
                    Err(Error::new(CKR_BUFFER_TOO_SMALL))
                }
            }
        }
    }
}

/// A byte output of a length fixed by the caller, filled front to back
/// (`C_GenerateRandom`'s `pRandomData`, `ulRandomLen`).
pub struct OutBytes<'a> {
    buf: *mut u8,
    capacity: usize,
    filled: usize,
    _caller: PhantomData<&'a mut [u8]>,
}

impl OutBytes<'_> {
    /// Takes the caller's buffer of `len` bytes; NULL is `CKR_ARGUMENTS_BAD`
    /// unless `len` is 0.
    ///
    /// # Safety
    /// `buf` is NULL or valid for writing `len` bytes, and nothing else
    /// accesses it while the `OutBytes` lives.
    pub unsafe fn from_raw(buf: *mut u8, len: CK_ULONG) -> Result<Self, Error> {
        let capacity = usize::try_from(len).map_err(|_| Error::new(CKR_ARGUMENTS_BAD))?;
        if buf.is_null() && capacity > 0 {
            return Err(Error::new(CKR_ARGUMENTS_BAD));
        }
        Ok(Self {
            buf,
            capacity,
            filled: 0,
            _caller: PhantomData,
        })
    }

    pub fn len(&self) -> usize {
        self.capacity
    }

    /// Appends `bytes`; more than the room left is a broken peer
    /// (`CKR_DEVICE_ERROR`), nothing written.
    pub fn append(&mut self, bytes: &[u8]) -> Result<(), Error> {
        if bytes.len() > self.capacity - self.filled {
            return Err(Error::device());
        }
        if bytes.is_empty() {
            return Ok(());
        }
        // SAFETY: `buf` is valid for writing `capacity` bytes (from_raw's
        // contract; non-NULL since bytes remain to be written), and
        // `filled + bytes.len() <= capacity`; `bytes` is our own memory.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.buf.add(self.filled), bytes.len());
        }
        self.filled += bytes.len();
        Ok(())
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
