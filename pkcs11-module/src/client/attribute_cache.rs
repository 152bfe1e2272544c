//! A length query's answer, kept for the call that follows it.
//!
//! Applications read attributes in two calls: `C_GetAttributeValue` with
//! NULL buffers for the lengths, then again with buffers of those lengths.
//! The server answers both with the values, so the module keeps the first
//! answer; the second call — same session, same object, attributes the
//! first asked, within [`KEEP`] — is answered from it without a round trip. An answer
//! is used once. Every request that could change what it says (a write to
//! an object, a login or logout, closing sessions, ...) drops every kept
//! answer before it is sent; what other processes do meanwhile is seen as
//! if it had happened just after the second call. Kept values are wiped
//! when dropped (`AttributeValue` zeroizes).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hsmlink_protocol::{AttributeResult, AttributeType, ObjectHandle, Request, SessionHandle};
use parking_lot::Mutex;

/// How long an answer is kept: the two calls of one read come within
/// microseconds of each other.
pub const KEEP: Duration = Duration::from_millis(100);

#[derive(Debug)]
struct Kept {
    object: ObjectHandle,
    types: Vec<AttributeType>,
    results: Vec<AttributeResult>,
    at: Instant,
}

#[derive(Debug, Default)]
pub struct AttributeCache {
    kept: Mutex<HashMap<SessionHandle, Kept>>,
}

impl AttributeCache {
    /// Keeps the answer of a length query on `session`.
    pub fn keep(
        &self,
        session: SessionHandle,
        object: ObjectHandle,
        types: Vec<AttributeType>,
        results: Vec<AttributeResult>,
    ) {
        let kept = Kept {
            object,
            types,
            results,
            at: Instant::now(),
        };
        self.kept.lock().insert(session, kept);
    }

    /// The kept answer for this call, if it is the one that follows the
    /// length query: the same object, and attributes the query asked (the
    /// `cryptoki` crate asks again only for those whose length it lacked);
    /// the session's kept answer is gone either way.
    pub fn take(
        &self,
        session: SessionHandle,
        object: ObjectHandle,
        types: &[AttributeType],
    ) -> Option<Vec<AttributeResult>> {
        let kept = self.kept.lock().remove(&session)?;
        if kept.object != object || kept.at.elapsed() > KEEP {
            return None;
        }
        types
            .iter()
            .map(|t| {
                let at = kept.types.iter().position(|k| k == t)?;
                kept.results.get(at).cloned()
            })
            .collect()
    }

    /// Called before each request is sent: drops every kept answer unless
    /// `request` leaves objects and login state as they are.
    pub fn before(&self, request: &Request) {
        if !leaves_attributes(request) {
            let mut kept = self.kept.lock();
            if !kept.is_empty() {
                kept.clear();
            }
        }
    }
}

/// Requests that change no attribute of any object and no login state.
fn leaves_attributes(request: &Request) -> bool {
    use Request as R;
    matches!(
        request,
        R::GetSlotList { .. }
            | R::GetSlotInfo { .. }
            | R::GetTokenInfo { .. }
            | R::GetMechanismList { .. }
            | R::GetMechanismInfo { .. }
            | R::GetSessionInfo { .. }
            | R::GetAttributeValue { .. }
            | R::GetObjectSize { .. }
            | R::FindObjectsInit { .. }
            | R::FindObjects { .. }
            | R::FindObjectsFinal { .. }
            | R::GenerateRandom { .. }
            | R::SeedRandom { .. }
            | R::EncryptInit { .. }
            | R::Encrypt { .. }
            | R::EncryptUpdate { .. }
            | R::EncryptFinal { .. }
            | R::DecryptInit { .. }
            | R::Decrypt { .. }
            | R::DecryptUpdate { .. }
            | R::DecryptFinal { .. }
            | R::DigestInit { .. }
            | R::Digest { .. }
            | R::DigestUpdate { .. }
            | R::DigestFinal { .. }
            | R::SignInit { .. }
            | R::Sign { .. }
            | R::SignUpdate { .. }
            | R::SignFinal { .. }
            | R::SignDigest { .. }
            | R::VerifyInit { .. }
            | R::Verify { .. }
            | R::VerifyUpdate { .. }
            | R::VerifyFinal { .. }
            | R::VerifyDigest { .. }
            | R::Begin { .. }
    )
}

#[cfg(test)]
mod tests {
    use hsmlink_protocol::{AttributeValue, Secret};

    use super::*;

    const S: SessionHandle = SessionHandle(1);
    const O: ObjectHandle = ObjectHandle(7);

    fn types() -> Vec<AttributeType> {
        vec![AttributeType(3), AttributeType(0x11)]
    }

    fn results() -> Vec<AttributeResult> {
        vec![
            AttributeResult::Value(AttributeValue::Bytes(b"label".to_vec())),
            AttributeResult::Sensitive,
        ]
    }

    #[test]
    fn the_following_read_is_answered_once() {
        let cache = AttributeCache::default();
        cache.keep(S, O, types(), results());
        assert_eq!(cache.take(S, O, &types()), Some(results()));
        assert_eq!(cache.take(S, O, &types()), None);
    }

    #[test]
    fn another_session_object_or_attribute_list_is_not_answered() {
        let cache = AttributeCache::default();
        cache.keep(S, O, types(), results());
        assert_eq!(cache.take(SessionHandle(2), O, &types()), None);
        assert_eq!(cache.take(S, ObjectHandle(8), &types()), None);
        // The mismatch used the session's answer up.
        assert_eq!(cache.take(S, O, &types()), None);
        // A subset, in any order, is answered.
        cache.keep(S, O, types(), results());
        assert_eq!(
            cache.take(S, O, &[types()[1], types()[0]]),
            Some(vec![results()[1].clone(), results()[0].clone()])
        );
        cache.keep(S, O, types(), results());
        assert_eq!(cache.take(S, O, &[AttributeType(0x100)]), None);
    }

    #[test]
    fn writes_and_logins_drop_every_answer_data_calls_do_not() {
        let cache = AttributeCache::default();
        cache.keep(S, O, types(), results());
        cache.before(&Request::GenerateRandom {
            session: SessionHandle(2),
            len: 8,
        });
        assert!(cache.take(S, O, &types()).is_some());
        for write in [
            Request::Logout {
                session: SessionHandle(2),
            },
            Request::DestroyObject {
                session: SessionHandle(2),
                object: O,
            },
            Request::SetAttributeValue {
                session: SessionHandle(2),
                object: O,
                template: Vec::new(),
            },
            Request::Login {
                session: SessionHandle(2),
                user_type: hsmlink_protocol::UserType(1),
                pin: Secret::from_slice(b"1234"),
            },
        ] {
            cache.keep(S, O, types(), results());
            cache.before(&write);
            assert_eq!(cache.take(S, O, &types()), None, "{write:?}");
        }
    }

    #[test]
    fn a_stale_answer_is_not_used() {
        let cache = AttributeCache::default();
        cache.keep(S, O, types(), results());
        std::thread::sleep(KEEP + Duration::from_millis(20));
        assert_eq!(cache.take(S, O, &types()), None);
    }
}
