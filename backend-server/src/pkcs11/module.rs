//! A vendor PKCS#11 module, loaded once per path, and a thin safe layer
//! over its function list: every raw call of the driver is here, each
//! returning a [`CkResult`] (the module's `CK_RV`, unchanged).
//!
//! `C_Initialize` runs once per loaded module, with `CKF_OS_LOCKING_OK` (the
//! module uses its own OS locks; we hand it no callbacks, so no panic of
//! ours can ever unwind through the module). Partitions on devices of the
//! same module share one [`Module`]; `C_Finalize` runs when the last of them
//! goes.
//!
//! Arguments are built here from owned Rust values: every pointer handed to
//! the module points at a live buffer of the length passed with it, or is
//! NULL where the standard allows it (a length query), and the module keeps
//! none of them after the call returns.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use cryptoki_sys::*;
use zeroize::Zeroizing;

use super::params::CMechanism;
use super::template::CTemplate;
use crate::driver::OpKind;
use crate::error::{CkResult, Ckr};

/// Modules loaded by this process, by path.
static MODULES: Mutex<BTreeMap<PathBuf, Weak<Module>>> = Mutex::new(BTreeMap::new());

/// `CK_RV` to a result.
pub fn check(rv: CK_RV) -> CkResult<()> {
    if rv == CKR_OK { Ok(()) } else { Err(Ckr(rv)) }
}

/// A loaded and initialised PKCS#11 module.
pub struct Module {
    path: PathBuf,
    /// The module's function list: static data of the library, valid while
    /// `_library` is loaded.
    list: *const CK_FUNCTION_LIST,
    /// Whether our `C_Initialize` initialised it (so `C_Finalize` is ours).
    finalize: bool,
    _library: libloading::Library,
}

// SAFETY: `list` points at the module's immutable function table, valid for
// as long as the library is loaded (this value owns it). The module was
// initialised with CKF_OS_LOCKING_OK, which PKCS#11 (section 5.4) defines as
// permission to call it from several threads at once; we never use one
// session from two threads at a time (sessions are checked out of a pool).
unsafe impl Send for Module {}
// SAFETY: as for `Send`: shared references only read the function table.
unsafe impl Sync for Module {}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module").field("path", &self.path).finish()
    }
}

/// Calls function `$f` of the module's list with `$args`, giving its `CK_RV`
/// (`CKR_FUNCTION_NOT_SUPPORTED` if the module leaves the entry NULL).
macro_rules! call {
    ($module:expr, $f:ident ( $($arg:expr),* $(,)? )) => {{
        match $module.table().$f {
            None => CKR_FUNCTION_NOT_SUPPORTED,
            // SAFETY: `f` comes from the module's function list, valid while
            // the library is loaded (the `Module` owns it). The wrapper using
            // this macro builds every argument per the function's PKCS#11
            // signature: handles are plain integers, each pointer points at a
            // live buffer (or a live CK_MECHANISM / CK_ATTRIBUTE array with
            // owned parameter buffers) of the length passed with it, or is
            // NULL where the standard allows it; the module keeps none of them
            // after returning.
            Some(f) => unsafe { f($($arg),*) },
        }
    }};
}

/// The functions with data in and data out (`C_Encrypt`, `C_SignUpdate`
/// has none, ...): which one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Io {
    Encrypt,
    EncryptUpdate,
    Decrypt,
    DecryptUpdate,
    Sign,
    Digest,
    SignRecover,
    VerifyRecover,
}

/// The final functions with an output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Final {
    Encrypt,
    Decrypt,
    Sign,
    Digest,
}

/// What `C_GetTokenInfo` says, the parts the driver uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenId {
    pub label: String,
    pub serial: String,
    pub flags: CK_FLAGS,
}

impl Module {
    /// The module at `path`, loaded and initialised once per process.
    pub fn load(path: &Path) -> Result<Arc<Self>, String> {
        let mut modules = MODULES.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(module) = modules.get(path).and_then(Weak::upgrade) {
            return Ok(module);
        }
        let module = Arc::new(Self::open(path)?);
        modules.insert(path.to_owned(), Arc::downgrade(&module));
        Ok(module)
    }

    fn open(path: &Path) -> Result<Self, String> {
        let shown = path.display();
        // SAFETY: loading a library runs its initialisers. The operator
        // names the library in server.toml as the vendor's PKCS#11 module;
        // it is trusted like the server's own code.
        let library = unsafe { libloading::Library::new(path) }
            .map_err(|e| format!("cannot load the PKCS#11 module {shown}: {e}"))?;
        type GetFunctionList = unsafe extern "C" fn(*mut *mut CK_FUNCTION_LIST) -> CK_RV;
        // SAFETY: every PKCS#11 module exports C_GetFunctionList with this
        // signature (PKCS#11 3.0 section 5.2); the symbol does not outlive
        // `library` (used in this function only).
        let get: libloading::Symbol<'_, GetFunctionList> =
            unsafe { library.get(b"C_GetFunctionList\0") }
                .map_err(|e| format!("{shown} is not a PKCS#11 module: {e}"))?;
        let mut list: *mut CK_FUNCTION_LIST = ptr::null_mut();
        // SAFETY: `list` is a valid place for the module to write a pointer
        // to its static function list.
        let rv = unsafe { get(&mut list) };
        if rv != CKR_OK || list.is_null() {
            return Err(format!(
                "{shown}: C_GetFunctionList failed ({})",
                rv_name(rv)
            ));
        }
        let mut module = Self {
            path: path.to_owned(),
            list,
            finalize: false,
            _library: library,
        };
        let mut args = CK_C_INITIALIZE_ARGS {
            CreateMutex: None,
            DestroyMutex: None,
            LockMutex: None,
            UnlockMutex: None,
            flags: CKF_OS_LOCKING_OK,
            pReserved: ptr::null_mut(),
        };
        let args_ptr: *mut CK_C_INITIALIZE_ARGS = &mut args;
        match call!(module, C_Initialize(args_ptr.cast())) {
            CKR_OK => module.finalize = true,
            // Someone else in this process initialised it: share it, and
            // leave C_Finalize to them.
            CKR_CRYPTOKI_ALREADY_INITIALIZED => {}
            rv => return Err(format!("{shown}: C_Initialize failed ({})", rv_name(rv))),
        }
        Ok(module)
    }

    fn table(&self) -> &CK_FUNCTION_LIST {
        // SAFETY: `list` was checked non-NULL at load and points at the
        // module's function list, which lives as long as the library, which
        // `self` owns.
        unsafe { &*self.list }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    // ---- Slots and tokens ----

    pub fn slots_with_token(&self) -> CkResult<Vec<CK_SLOT_ID>> {
        let mut count: CK_ULONG = 0;
        check(call!(
            self,
            C_GetSlotList(CK_TRUE, ptr::null_mut(), &mut count)
        ))?;
        let mut slots: Vec<CK_SLOT_ID> = vec![0; usize::try_from(count).unwrap_or(0)];
        check(call!(
            self,
            C_GetSlotList(CK_TRUE, slots.as_mut_ptr(), &mut count)
        ))?;
        slots.truncate(usize::try_from(count).unwrap_or(0));
        Ok(slots)
    }

    pub fn token_id(&self, slot: CK_SLOT_ID) -> CkResult<TokenId> {
        let mut info = CK_TOKEN_INFO::default();
        check(call!(self, C_GetTokenInfo(slot, &mut info)))?;
        let text = |bytes: &[u8]| {
            String::from_utf8_lossy(bytes)
                .trim_end_matches([' ', '\0'])
                .to_owned()
        };
        Ok(TokenId {
            label: text(&info.label),
            serial: text(&info.serialNumber),
            flags: info.flags,
        })
    }

    pub fn mechanisms(
        &self,
        slot: CK_SLOT_ID,
    ) -> CkResult<Vec<(CK_MECHANISM_TYPE, CK_MECHANISM_INFO)>> {
        let mut count: CK_ULONG = 0;
        check(call!(
            self,
            C_GetMechanismList(slot, ptr::null_mut(), &mut count)
        ))?;
        let mut list: Vec<CK_MECHANISM_TYPE> = vec![0; usize::try_from(count).unwrap_or(0)];
        check(call!(
            self,
            C_GetMechanismList(slot, list.as_mut_ptr(), &mut count)
        ))?;
        list.truncate(usize::try_from(count).unwrap_or(0));
        let mut out = Vec::with_capacity(list.len());
        for mechanism in list {
            let mut info = CK_MECHANISM_INFO::default();
            if check(call!(self, C_GetMechanismInfo(slot, mechanism, &mut info))).is_ok() {
                out.push((mechanism, info));
            }
        }
        Ok(out)
    }

    // ---- Sessions ----

    /// A read/write session.
    pub fn open_session(&self, slot: CK_SLOT_ID) -> CkResult<CK_SESSION_HANDLE> {
        let mut session: CK_SESSION_HANDLE = 0;
        check(call!(
            self,
            C_OpenSession(
                slot,
                CKF_SERIAL_SESSION | CKF_RW_SESSION,
                ptr::null_mut(),
                None,
                &mut session
            )
        ))?;
        Ok(session)
    }

    pub fn close_session(&self, session: CK_SESSION_HANDLE) -> CkResult<()> {
        check(call!(self, C_CloseSession(session)))
    }

    /// `C_GetSessionInfo`'s state (`CKS_*`).
    pub fn session_state(&self, session: CK_SESSION_HANDLE) -> CkResult<CK_STATE> {
        let mut info = CK_SESSION_INFO {
            slotID: 0,
            state: 0,
            flags: 0,
            ulDeviceError: 0,
        };
        check(call!(self, C_GetSessionInfo(session, &mut info)))?;
        Ok(info.state)
    }

    /// `C_Login`; the PIN is read, never kept, by the module.
    pub fn login(
        &self,
        session: CK_SESSION_HANDLE,
        user: CK_USER_TYPE,
        pin: &[u8],
    ) -> CkResult<()> {
        let len = CK_ULONG::try_from(pin.len()).map_err(|_| Ckr(CKR_PIN_LEN_RANGE))?;
        check(call!(
            self,
            C_Login(session, user, pin.as_ptr().cast_mut(), len)
        ))
    }

    // ---- Objects ----

    /// Every object matching `template` that the session sees.
    pub fn find(
        &self,
        session: CK_SESSION_HANDLE,
        template: &mut CTemplate,
    ) -> CkResult<Vec<CK_OBJECT_HANDLE>> {
        check(call!(
            self,
            C_FindObjectsInit(session, template.as_mut_ptr(), template.count())
        ))?;
        let mut found = Vec::new();
        let result = loop {
            let mut batch: [CK_OBJECT_HANDLE; 64] = [0; 64];
            let mut n: CK_ULONG = 0;
            let rv = call!(self, C_FindObjects(session, batch.as_mut_ptr(), 64, &mut n));
            if let Err(e) = check(rv) {
                break Err(e);
            }
            let n = usize::try_from(n).unwrap_or(0).min(batch.len());
            found.extend_from_slice(&batch[..n]);
            if n == 0 {
                break Ok(());
            }
        };
        let finished = check(call!(self, C_FindObjectsFinal(session)));
        result?;
        finished?;
        Ok(found)
    }

    /// `C_GetAttributeValue` over raw attributes (see
    /// [`super::template::read_attributes`]): the `CK_RV` as the module gave it.
    pub fn get_attribute_value(
        &self,
        session: CK_SESSION_HANDLE,
        object: CK_OBJECT_HANDLE,
        attrs: &mut [CK_ATTRIBUTE],
    ) -> CK_RV {
        let Ok(count) = CK_ULONG::try_from(attrs.len()) else {
            return CKR_ARGUMENTS_BAD;
        };
        call!(
            self,
            C_GetAttributeValue(session, object, attrs.as_mut_ptr(), count)
        )
    }

    pub fn set_attribute_value(
        &self,
        session: CK_SESSION_HANDLE,
        object: CK_OBJECT_HANDLE,
        template: &mut CTemplate,
    ) -> CkResult<()> {
        check(call!(
            self,
            C_SetAttributeValue(session, object, template.as_mut_ptr(), template.count())
        ))
    }

    pub fn create_object(
        &self,
        session: CK_SESSION_HANDLE,
        template: &mut CTemplate,
    ) -> CkResult<CK_OBJECT_HANDLE> {
        let mut object: CK_OBJECT_HANDLE = 0;
        check(call!(
            self,
            C_CreateObject(
                session,
                template.as_mut_ptr(),
                template.count(),
                &mut object
            )
        ))?;
        Ok(object)
    }

    pub fn copy_object(
        &self,
        session: CK_SESSION_HANDLE,
        source: CK_OBJECT_HANDLE,
        template: &mut CTemplate,
    ) -> CkResult<CK_OBJECT_HANDLE> {
        let mut object: CK_OBJECT_HANDLE = 0;
        check(call!(
            self,
            C_CopyObject(
                session,
                source,
                template.as_mut_ptr(),
                template.count(),
                &mut object
            )
        ))?;
        Ok(object)
    }

    pub fn destroy_object(
        &self,
        session: CK_SESSION_HANDLE,
        object: CK_OBJECT_HANDLE,
    ) -> CkResult<()> {
        check(call!(self, C_DestroyObject(session, object)))
    }

    pub fn object_size(
        &self,
        session: CK_SESSION_HANDLE,
        object: CK_OBJECT_HANDLE,
    ) -> CkResult<u64> {
        let mut size: CK_ULONG = 0;
        check(call!(self, C_GetObjectSize(session, object, &mut size)))?;
        Ok(size)
    }

    // ---- Cryptographic operations ----

    /// `C_*Init` of `kind`.
    pub fn op_init(
        &self,
        kind: OpKind,
        session: CK_SESSION_HANDLE,
        mechanism: &mut CMechanism,
        key: CK_OBJECT_HANDLE,
    ) -> CkResult<()> {
        let m = mechanism.as_mut_ptr();
        check(match kind {
            OpKind::Encrypt => call!(self, C_EncryptInit(session, m, key)),
            OpKind::Decrypt => call!(self, C_DecryptInit(session, m, key)),
            OpKind::Sign => call!(self, C_SignInit(session, m, key)),
            OpKind::Verify => call!(self, C_VerifyInit(session, m, key)),
            OpKind::SignRecover => call!(self, C_SignRecoverInit(session, m, key)),
            OpKind::VerifyRecover => call!(self, C_VerifyRecoverInit(session, m, key)),
            OpKind::Digest => call!(self, C_DigestInit(session, m)),
        })
    }

    /// A data-in, data-out call. `out` `None` is a length query (the
    /// operation stays); returns the length the module reports, with
    /// `CKR_BUFFER_TOO_SMALL` as `Err` carrying nothing (ask again).
    pub fn io(
        &self,
        which: Io,
        session: CK_SESSION_HANDLE,
        input: &[u8],
        out: Option<&mut [u8]>,
    ) -> (CK_RV, usize) {
        let Ok(in_len) = CK_ULONG::try_from(input.len()) else {
            return (CKR_DATA_LEN_RANGE, 0);
        };
        let data = input.as_ptr().cast_mut();
        let (out_ptr, mut out_len): (*mut u8, CK_ULONG) = match out {
            Some(buf) => (buf.as_mut_ptr(), CK_ULONG::try_from(buf.len()).unwrap_or(0)),
            None => (ptr::null_mut(), 0),
        };
        let l = &mut out_len;
        let rv = match which {
            Io::Encrypt => call!(self, C_Encrypt(session, data, in_len, out_ptr, l)),
            Io::EncryptUpdate => call!(self, C_EncryptUpdate(session, data, in_len, out_ptr, l)),
            Io::Decrypt => call!(self, C_Decrypt(session, data, in_len, out_ptr, l)),
            Io::DecryptUpdate => call!(self, C_DecryptUpdate(session, data, in_len, out_ptr, l)),
            Io::Sign => call!(self, C_Sign(session, data, in_len, out_ptr, l)),
            Io::Digest => call!(self, C_Digest(session, data, in_len, out_ptr, l)),
            Io::SignRecover => call!(self, C_SignRecover(session, data, in_len, out_ptr, l)),
            Io::VerifyRecover => call!(self, C_VerifyRecover(session, data, in_len, out_ptr, l)),
        };
        (rv, usize::try_from(out_len).unwrap_or(usize::MAX))
    }

    /// A final call with an output; as [`Self::io`].
    pub fn final_(
        &self,
        which: Final,
        session: CK_SESSION_HANDLE,
        out: Option<&mut [u8]>,
    ) -> (CK_RV, usize) {
        let (out_ptr, mut out_len): (*mut u8, CK_ULONG) = match out {
            Some(buf) => (buf.as_mut_ptr(), CK_ULONG::try_from(buf.len()).unwrap_or(0)),
            None => (ptr::null_mut(), 0),
        };
        let l = &mut out_len;
        let rv = match which {
            Final::Encrypt => call!(self, C_EncryptFinal(session, out_ptr, l)),
            Final::Decrypt => call!(self, C_DecryptFinal(session, out_ptr, l)),
            Final::Sign => call!(self, C_SignFinal(session, out_ptr, l)),
            Final::Digest => call!(self, C_DigestFinal(session, out_ptr, l)),
        };
        (rv, usize::try_from(out_len).unwrap_or(usize::MAX))
    }

    /// `C_SignUpdate`, `C_VerifyUpdate`, `C_DigestUpdate`.
    pub fn update(&self, kind: OpKind, session: CK_SESSION_HANDLE, input: &[u8]) -> CkResult<()> {
        let len = CK_ULONG::try_from(input.len()).map_err(|_| Ckr(CKR_DATA_LEN_RANGE))?;
        let data = input.as_ptr().cast_mut();
        check(match kind {
            OpKind::Sign => call!(self, C_SignUpdate(session, data, len)),
            OpKind::Verify => call!(self, C_VerifyUpdate(session, data, len)),
            OpKind::Digest => call!(self, C_DigestUpdate(session, data, len)),
            _ => CKR_FUNCTION_NOT_SUPPORTED,
        })
    }

    pub fn verify(
        &self,
        session: CK_SESSION_HANDLE,
        data: &[u8],
        signature: &[u8],
    ) -> CkResult<()> {
        let len = CK_ULONG::try_from(data.len()).map_err(|_| Ckr(CKR_DATA_LEN_RANGE))?;
        let sig_len =
            CK_ULONG::try_from(signature.len()).map_err(|_| Ckr(CKR_SIGNATURE_LEN_RANGE))?;
        check(call!(
            self,
            C_Verify(
                session,
                data.as_ptr().cast_mut(),
                len,
                signature.as_ptr().cast_mut(),
                sig_len
            )
        ))
    }

    pub fn verify_final(&self, session: CK_SESSION_HANDLE, signature: &[u8]) -> CkResult<()> {
        let sig_len =
            CK_ULONG::try_from(signature.len()).map_err(|_| Ckr(CKR_SIGNATURE_LEN_RANGE))?;
        check(call!(
            self,
            C_VerifyFinal(session, signature.as_ptr().cast_mut(), sig_len)
        ))
    }

    pub fn digest_key(&self, session: CK_SESSION_HANDLE, key: CK_OBJECT_HANDLE) -> CkResult<()> {
        check(call!(self, C_DigestKey(session, key)))
    }

    // ---- Key management, random ----

    pub fn generate_key(
        &self,
        session: CK_SESSION_HANDLE,
        mechanism: &mut CMechanism,
        template: &mut CTemplate,
    ) -> CkResult<CK_OBJECT_HANDLE> {
        let mut key: CK_OBJECT_HANDLE = 0;
        check(call!(
            self,
            C_GenerateKey(
                session,
                mechanism.as_mut_ptr(),
                template.as_mut_ptr(),
                template.count(),
                &mut key
            )
        ))?;
        Ok(key)
    }

    pub fn generate_key_pair(
        &self,
        session: CK_SESSION_HANDLE,
        mechanism: &mut CMechanism,
        public: &mut CTemplate,
        private: &mut CTemplate,
    ) -> CkResult<(CK_OBJECT_HANDLE, CK_OBJECT_HANDLE)> {
        let (mut public_key, mut private_key): (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) = (0, 0);
        check(call!(
            self,
            C_GenerateKeyPair(
                session,
                mechanism.as_mut_ptr(),
                public.as_mut_ptr(),
                public.count(),
                private.as_mut_ptr(),
                private.count(),
                &mut public_key,
                &mut private_key
            )
        ))?;
        Ok((public_key, private_key))
    }

    /// `C_WrapKey`: a length query (`out` `None`) or the wrapped key.
    pub fn wrap_key(
        &self,
        session: CK_SESSION_HANDLE,
        mechanism: &mut CMechanism,
        wrapping_key: CK_OBJECT_HANDLE,
        key: CK_OBJECT_HANDLE,
        out: Option<&mut [u8]>,
    ) -> (CK_RV, usize) {
        let (out_ptr, mut out_len): (*mut u8, CK_ULONG) = match out {
            Some(buf) => (buf.as_mut_ptr(), CK_ULONG::try_from(buf.len()).unwrap_or(0)),
            None => (ptr::null_mut(), 0),
        };
        let rv = call!(
            self,
            C_WrapKey(
                session,
                mechanism.as_mut_ptr(),
                wrapping_key,
                key,
                out_ptr,
                &mut out_len
            )
        );
        (rv, usize::try_from(out_len).unwrap_or(usize::MAX))
    }

    pub fn unwrap_key(
        &self,
        session: CK_SESSION_HANDLE,
        mechanism: &mut CMechanism,
        unwrapping_key: CK_OBJECT_HANDLE,
        wrapped: &[u8],
        template: &mut CTemplate,
    ) -> CkResult<CK_OBJECT_HANDLE> {
        let len = CK_ULONG::try_from(wrapped.len()).map_err(|_| Ckr(CKR_WRAPPED_KEY_LEN_RANGE))?;
        let mut key: CK_OBJECT_HANDLE = 0;
        check(call!(
            self,
            C_UnwrapKey(
                session,
                mechanism.as_mut_ptr(),
                unwrapping_key,
                wrapped.as_ptr().cast_mut(),
                len,
                template.as_mut_ptr(),
                template.count(),
                &mut key
            )
        ))?;
        Ok(key)
    }

    pub fn derive_key(
        &self,
        session: CK_SESSION_HANDLE,
        mechanism: &mut CMechanism,
        base_key: CK_OBJECT_HANDLE,
        template: &mut CTemplate,
    ) -> CkResult<CK_OBJECT_HANDLE> {
        let mut key: CK_OBJECT_HANDLE = 0;
        check(call!(
            self,
            C_DeriveKey(
                session,
                mechanism.as_mut_ptr(),
                base_key,
                template.as_mut_ptr(),
                template.count(),
                &mut key
            )
        ))?;
        Ok(key)
    }

    pub fn random(&self, session: CK_SESSION_HANDLE, len: usize) -> CkResult<Zeroizing<Vec<u8>>> {
        let mut out = Zeroizing::new(vec![0u8; len]);
        let n = CK_ULONG::try_from(len).map_err(|_| Ckr(CKR_ARGUMENTS_BAD))?;
        check(call!(self, C_GenerateRandom(session, out.as_mut_ptr(), n)))?;
        Ok(out)
    }
}

impl Drop for Module {
    fn drop(&mut self) {
        if self.finalize {
            let _ = call!(self, C_Finalize(ptr::null_mut()));
        }
    }
}

/// A `CK_RV` for messages: its name where it is a common one.
pub fn rv_name(rv: CK_RV) -> String {
    let name = match rv {
        CKR_OK => "CKR_OK",
        CKR_GENERAL_ERROR => "CKR_GENERAL_ERROR",
        CKR_FUNCTION_FAILED => "CKR_FUNCTION_FAILED",
        CKR_ARGUMENTS_BAD => "CKR_ARGUMENTS_BAD",
        CKR_DEVICE_ERROR => "CKR_DEVICE_ERROR",
        CKR_DEVICE_MEMORY => "CKR_DEVICE_MEMORY",
        CKR_DEVICE_REMOVED => "CKR_DEVICE_REMOVED",
        CKR_PIN_INCORRECT => "CKR_PIN_INCORRECT",
        CKR_PIN_LOCKED => "CKR_PIN_LOCKED",
        CKR_PIN_LEN_RANGE => "CKR_PIN_LEN_RANGE",
        CKR_TOKEN_NOT_PRESENT => "CKR_TOKEN_NOT_PRESENT",
        CKR_TOKEN_NOT_RECOGNIZED => "CKR_TOKEN_NOT_RECOGNIZED",
        CKR_USER_PIN_NOT_INITIALIZED => "CKR_USER_PIN_NOT_INITIALIZED",
        CKR_SESSION_COUNT => "CKR_SESSION_COUNT",
        CKR_CRYPTOKI_NOT_INITIALIZED => "CKR_CRYPTOKI_NOT_INITIALIZED",
        CKR_FUNCTION_NOT_SUPPORTED => "CKR_FUNCTION_NOT_SUPPORTED",
        _ => return format!("CK_RV {rv:#x}"),
    };
    name.to_owned()
}
