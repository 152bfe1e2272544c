//! Names that travel between configuration, certificates and logs.
//!
//! Parsed once, at the edge ("parse, don't validate"): holding a
//! [`TenantName`] or a [`PartitionName`] means the text obeys the rule.

use std::fmt;

use serde::Deserialize;

/// A client certificate names its tenant with the SAN URI `hsmlink:tenant:NAME`.
pub const TENANT_URI_PREFIX: &str = "hsmlink:tenant:";

/// The rule both kinds of names follow, for error messages.
pub const NAME_RULE: &str = "[a-z0-9][a-z0-9_-]{0,62}";

/// A tenant's name, as the SAN URI `hsmlink:tenant:<NAME>` of its client
/// certificate gives it: `[a-z0-9][a-z0-9_-]{0,62}`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct TenantName(String);

/// The name of an HSM partition, unique across the server; same rule as
/// tenant names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct PartitionName(String);

/// A name broke [`NAME_RULE`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} name {name:?}: must match {NAME_RULE}")]
pub struct InvalidName {
    kind: &'static str,
    name: String,
}

macro_rules! name_type {
    ($name:ident, $kind:literal) => {
        impl $name {
            pub fn parse(name: &str) -> Result<Self, InvalidName> {
                if is_valid_name(name) {
                    Ok(Self(name.to_owned()))
                } else {
                    Err(InvalidName {
                        kind: $kind,
                        // Cut what we echo back: the input may be anything.
                        name: name.chars().take(80).collect(),
                    })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidName;

            fn try_from(name: String) -> Result<Self, InvalidName> {
                Self::parse(&name)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(TenantName, "tenant");
name_type!(PartitionName, "partition");

/// A token's serial number (`CK_TOKEN_INFO.serialNumber`): 1 to 16
/// printable ASCII characters, so it fits the 16-byte blank-padded field.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct TokenSerial(String);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid token serial {0:?}: must be 1 to 16 printable ASCII characters")]
pub struct InvalidSerial(String);

impl TokenSerial {
    pub fn parse(serial: &str) -> Result<Self, InvalidSerial> {
        if (1..=16).contains(&serial.len()) && serial.bytes().all(|b| b.is_ascii_graphic()) {
            Ok(Self(serial.to_owned()))
        } else {
            Err(InvalidSerial(serial.chars().take(80).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TokenSerial {
    type Error = InvalidSerial;

    fn try_from(serial: String) -> Result<Self, InvalidSerial> {
        Self::parse(&serial)
    }
}

impl fmt::Display for TokenSerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `[a-z0-9][a-z0-9_-]{0,62}`, without a regex engine.
fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    match bytes.split_first() {
        Some((first, rest)) => {
            (first.is_ascii_lowercase() || first.is_ascii_digit())
                && rest.len() <= 62
                && rest.iter().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-'
                })
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rule() {
        for good in ["demo", "0", "a-b_c", "x9", &"a".repeat(63)] {
            assert!(TenantName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "Demo", "-a", "_a", "a.b", "a b", "é", &"a".repeat(64)] {
            assert!(TenantName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn serials_fit_the_token_info_field() {
        assert!(TokenSerial::parse("9f3c2a7e51d04b86").is_ok());
        assert!(TokenSerial::parse("1").is_ok());
        assert!(TokenSerial::parse("").is_err());
        assert!(TokenSerial::parse("0123456789abcdef0").is_err());
        assert!(TokenSerial::parse("with space").is_err());
    }

    #[test]
    fn error_names_the_kind_and_the_rule() {
        let err = PartitionName::parse("Bad").unwrap_err().to_string();
        assert!(
            err.contains("partition") && err.contains(NAME_RULE),
            "{err}"
        );
    }
}
