//! Key states after NIST SP 800-57 part 1 (section 5.3): the value of
//! `CKA_HSMLINK_KEY_STATE`, which moves forward only, and what each state
//! lets a key do. The soft HSM's attribute rules ([`crate::attributes`])
//! apply [`check_transition`]; its single usage check,
//! `soft::operations::Key::permits`, applies [`permits_usage`], and
//! `C_WrapKey` [`permits_export`] on the key it wraps. The `pkcs11`
//! driver applies the same functions to the states it keeps for a vendor
//! device's keys (`pkcs11::key_states`).
//!
//! | state | uses | moves to (who) |
//! | --- | --- | --- |
//! | pre-activation | none | active, deactivated (user); compromised (user, SO) |
//! | active | what its usage attributes allow | deactivated (user); compromised (user, SO) |
//! | deactivated | decrypt, verify, verify-recover, unwrap | compromised (user, SO); destroyed (user) |
//! | compromised | decrypt, verify, verify-recover, unwrap | destroyed (user) |
//! | destroyed | none (material wiped) | nothing |

use cryptoki_sys::{CKR_ATTRIBUTE_READ_ONLY, CKR_ATTRIBUTE_VALUE_INVALID, CKR_USER_NOT_LOGGED_IN};
use hsmlink_protocol::attribute_kind as cka;
use hsmlink_protocol::vendor::{
    CKS_HSMLINK_ACTIVE, CKS_HSMLINK_COMPROMISED, CKS_HSMLINK_DEACTIVATED, CKS_HSMLINK_DESTROYED,
    CKS_HSMLINK_PRE_ACTIVATION, KEY_STATES,
};

use crate::attributes::Actor;
use crate::error::{CkResult, Ckr};

/// One state of a key's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    PreActivation,
    Active,
    Deactivated,
    Compromised,
    Destroyed,
}

impl State {
    /// The state a `CKA_HSMLINK_KEY_STATE` value names
    /// (`CKR_ATTRIBUTE_VALUE_INVALID` for any other number).
    pub fn from_value(value: u64) -> CkResult<Self> {
        Ok(match value {
            CKS_HSMLINK_PRE_ACTIVATION => Self::PreActivation,
            CKS_HSMLINK_ACTIVE => Self::Active,
            CKS_HSMLINK_DEACTIVATED => Self::Deactivated,
            CKS_HSMLINK_COMPROMISED => Self::Compromised,
            CKS_HSMLINK_DESTROYED => Self::Destroyed,
            _ => return Err(Ckr(CKR_ATTRIBUTE_VALUE_INVALID)),
        })
    }

    /// The state of a stored value; a key stored before key states existed
    /// has none and is active.
    pub fn of(value: Option<u64>) -> Self {
        match value {
            None => Self::Active,
            // An unknown stored number (a later version's) permits nothing.
            Some(v) => Self::from_value(v).unwrap_or(Self::Destroyed),
        }
    }

    pub fn value(self) -> u64 {
        match self {
            Self::PreActivation => CKS_HSMLINK_PRE_ACTIVATION,
            Self::Active => CKS_HSMLINK_ACTIVE,
            Self::Deactivated => CKS_HSMLINK_DEACTIVATED,
            Self::Compromised => CKS_HSMLINK_COMPROMISED,
            Self::Destroyed => CKS_HSMLINK_DESTROYED,
        }
    }
}

/// The C name of a state value (`CKS_HSMLINK_ACTIVE`), or the number.
pub fn name(value: u64) -> String {
    KEY_STATES
        .iter()
        .find(|(_, v)| *v == value)
        .map_or_else(|| format!("{value:#x}"), |(n, _)| (*n).to_owned())
}

/// The states a key may be made in (`C_CreateObject`, `C_GenerateKey`,
/// `C_GenerateKeyPair`, `C_UnwrapKey`, `C_DeriveKey`, key blocks):
/// active, or pre-activation when the template asks.
pub fn check_initial(value: u64) -> CkResult<()> {
    match State::from_value(value)? {
        State::PreActivation | State::Active => Ok(()),
        _ => Err(Ckr(CKR_ATTRIBUTE_VALUE_INVALID)),
    }
}

/// Whether `actor` may move a key from `from` to `to` (`from != to`), by
/// `C_SetAttributeValue` or the template of `C_CopyObject`.
/// A destroyed key's state is `CKR_ATTRIBUTE_READ_ONLY`; a move the table
/// lacks (backwards, or skipping a state) `CKR_ATTRIBUTE_VALUE_INVALID`;
/// the SO asking anything but compromised `CKR_ATTRIBUTE_READ_ONLY`; a
/// session without a login `CKR_USER_NOT_LOGGED_IN`.
pub fn check_transition(from: State, to: State, actor: Actor) -> CkResult<()> {
    use State::*;
    if from == Destroyed {
        return Err(Ckr(CKR_ATTRIBUTE_READ_ONLY));
    }
    let allowed = matches!(
        (from, to),
        (PreActivation, Active)
            | (PreActivation | Active, Deactivated)
            | (PreActivation | Active | Deactivated, Compromised)
            | (Deactivated | Compromised, Destroyed)
    );
    if !allowed {
        return Err(Ckr(CKR_ATTRIBUTE_VALUE_INVALID));
    }
    match actor {
        Actor::User => Ok(()),
        Actor::So if to == Compromised => Ok(()),
        Actor::So => Err(Ckr(CKR_ATTRIBUTE_READ_ONLY)),
        Actor::Other => Err(Ckr(CKR_USER_NOT_LOGGED_IN)),
    }
}

/// Whether a key in `state` may be used for `usage` (a `CKA_*` usage
/// attribute: `CKA_ENCRYPT`, `CKA_SIGN`, `CKA_WRAP`, ...; 0 for a use no
/// attribute names, such as `C_DigestKey`).
pub fn permits_usage(state: State, usage: u64) -> bool {
    match state {
        State::Active => true,
        State::Deactivated | State::Compromised => matches!(
            usage,
            cka::CKA_DECRYPT | cka::CKA_VERIFY | cka::CKA_VERIFY_RECOVER | cka::CKA_UNWRAP
        ),
        State::PreActivation | State::Destroyed => false,
    }
}

/// Whether a key in `state` may leave the token wrapped (`C_WrapKey`,
/// key-block export): active keys only.
pub fn permits_export(state: State) -> bool {
    state == State::Active
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [State; 5] = [
        State::PreActivation,
        State::Active,
        State::Deactivated,
        State::Compromised,
        State::Destroyed,
    ];

    /// The table of README "Key states", written out on its own.
    fn expected(from: State, to: State) -> bool {
        use State::*;
        let pairs = [
            (PreActivation, Active),
            (PreActivation, Deactivated),
            (Active, Deactivated),
            (PreActivation, Compromised),
            (Active, Compromised),
            (Deactivated, Compromised),
            (Deactivated, Destroyed),
            (Compromised, Destroyed),
        ];
        pairs.contains(&(from, to))
    }

    #[test]
    fn transitions_of_the_user() {
        let mut allowed = 0;
        for from in ALL {
            for to in ALL {
                if from == to {
                    continue;
                }
                let got = check_transition(from, to, Actor::User);
                if expected(from, to) {
                    assert_eq!(got, Ok(()), "{from:?} -> {to:?}");
                    allowed += 1;
                } else if from == State::Destroyed {
                    assert_eq!(got, Err(Ckr(CKR_ATTRIBUTE_READ_ONLY)), "{from:?} -> {to:?}");
                } else {
                    assert_eq!(
                        got,
                        Err(Ckr(CKR_ATTRIBUTE_VALUE_INVALID)),
                        "{from:?} -> {to:?}"
                    );
                }
            }
        }
        assert_eq!(allowed, 8);
    }

    #[test]
    fn the_so_only_marks_compromised_and_no_login_moves_nothing() {
        for from in ALL {
            for to in ALL {
                if from == to || !expected(from, to) {
                    continue;
                }
                let so = check_transition(from, to, Actor::So);
                if to == State::Compromised {
                    assert_eq!(so, Ok(()), "{from:?} -> {to:?}");
                } else {
                    assert_eq!(so, Err(Ckr(CKR_ATTRIBUTE_READ_ONLY)), "{from:?} -> {to:?}");
                }
                assert_eq!(
                    check_transition(from, to, Actor::Other),
                    Err(Ckr(CKR_USER_NOT_LOGGED_IN))
                );
            }
        }
    }

    #[test]
    fn uses_per_state() {
        let usages = [
            cka::CKA_ENCRYPT,
            cka::CKA_DECRYPT,
            cka::CKA_SIGN,
            cka::CKA_VERIFY,
            cka::CKA_SIGN_RECOVER,
            cka::CKA_VERIFY_RECOVER,
            cka::CKA_WRAP,
            cka::CKA_UNWRAP,
            cka::CKA_DERIVE,
            0,
        ];
        let processing = [
            cka::CKA_DECRYPT,
            cka::CKA_VERIFY,
            cka::CKA_VERIFY_RECOVER,
            cka::CKA_UNWRAP,
        ];
        for usage in usages {
            assert!(permits_usage(State::Active, usage));
            assert!(!permits_usage(State::PreActivation, usage));
            assert!(!permits_usage(State::Destroyed, usage));
            for state in [State::Deactivated, State::Compromised] {
                assert_eq!(permits_usage(state, usage), processing.contains(&usage));
            }
        }
        for state in ALL {
            assert_eq!(permits_export(state), state == State::Active);
        }
    }

    #[test]
    fn values_and_creation() {
        for state in ALL {
            assert_eq!(State::from_value(state.value()), Ok(state));
        }
        assert_eq!(State::from_value(5), Err(Ckr(CKR_ATTRIBUTE_VALUE_INVALID)));
        assert_eq!(State::of(None), State::Active);
        assert_eq!(State::of(Some(99)), State::Destroyed);
        assert_eq!(check_initial(CKS_HSMLINK_PRE_ACTIVATION), Ok(()));
        assert_eq!(check_initial(CKS_HSMLINK_ACTIVE), Ok(()));
        for v in [
            CKS_HSMLINK_DEACTIVATED,
            CKS_HSMLINK_COMPROMISED,
            CKS_HSMLINK_DESTROYED,
            7,
        ] {
            assert_eq!(check_initial(v), Err(Ckr(CKR_ATTRIBUTE_VALUE_INVALID)));
        }
        assert_eq!(name(CKS_HSMLINK_DEACTIVATED), "CKS_HSMLINK_DEACTIVATED");
        assert_eq!(name(9), "0x9");
    }
}
