//! SM compatibility profiles: another vendor's numbers for the GM/T key
//! types and mechanisms.
//!
//! PKCS#11 has no standard numbers for SM2, SM3 and SM4, and the vendors
//! that ship them each picked their own (and some collide: Sansec and TASS
//! both call `0x80000004` SM2, TASS calls `0x8000010A` an SM4 MAC). hsmlink
//! has its own numbers (`include/hsmlink.h`); with `sm_profile = "<vendor>"`
//! in `client.toml` the module also accepts that vendor's numbers, so that an
//! application compiled against the vendor's header runs unchanged:
//! - inbound, a vendor number in a `CK_MECHANISM`, in `C_GetMechanismInfo`,
//!   or as the value of `CKA_KEY_TYPE`, `CKA_KEY_GEN_MECHANISM` or
//!   `CKA_ALLOWED_MECHANISMS` (in nested templates too) becomes hsmlink's
//!   before anything else looks at it; hsmlink's own numbers stay accepted;
//! - outbound, `C_GetMechanismList` and those attributes show the vendor's
//!   number where the profile has one.
//!
//! Only the numbers change: parameters and output formats stay hsmlink's
//! (`CK_HSMLINK_SM2_PARAMS` or none for the signer's id, signatures as
//! r‖s, ciphertexts as C1‖C3‖C2). A vendor mechanism with no hsmlink
//! equivalent is left alone and so is `CKR_MECHANISM_INVALID`.
//!
//! The vendor numbers are those the vendors' PKCS#11 modules use as
//! recorded in public vendor tables (for example the xipki PKCS#11
//! wrapper's vendor configuration); README lists them.

use hsmlink_protocol::vendor::*;
use hsmlink_protocol::{Attribute, AttributeResult, AttributeType, AttributeValue, MechanismType};

/// One vendor's numbers: `(vendor, hsmlink)` pairs, each side unique.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmProfile {
    pub name: &'static str,
    key_types: &'static [(u64, u64)],
    mechanisms: &'static [(u64, u64)],
}

/// hsmlink's own numbers only (the default).
pub const HSMLINK: SmProfile = SmProfile {
    name: "hsmlink",
    key_types: &[],
    mechanisms: &[],
};

/// Sansec (三未信安) HSMs' PKCS#11 module.
pub const SANSEC: SmProfile = SmProfile {
    name: "sansec",
    key_types: &[
        (0x8000_0004, CKK_HSMLINK_SM2),
        (0x8000_0106, CKK_HSMLINK_SM4),
    ],
    mechanisms: &[
        (0x8000_8001, CKM_HSMLINK_SM2_KEY_PAIR_GEN),
        (0x8000_8104, CKM_HSMLINK_SM2),
        (0x8000_8100, CKM_HSMLINK_SM2_SM3),
        (0x8000_8200, CKM_HSMLINK_SM2_ENCRYPT),
        (0x8000_9001, CKM_HSMLINK_SM3),
        (0x8000_0107, CKM_HSMLINK_SM4_KEY_GEN),
        (0x8000_0108, CKM_HSMLINK_SM4_ECB),
        (0x8000_0109, CKM_HSMLINK_SM4_CBC),
        (0x8000_A102, CKM_HSMLINK_SM4_CBC_PAD),
    ],
};

/// TASS (江南天安) HSMs' PKCS#11 module.
pub const TASS: SmProfile = SmProfile {
    name: "tass",
    key_types: &[
        (0x8000_0004, CKK_HSMLINK_SM2),
        (0x8000_0002, CKK_HSMLINK_SM4),
    ],
    mechanisms: &[
        (0x8000_8001, CKM_HSMLINK_SM2_KEY_PAIR_GEN),
        (0x8000_8000, CKM_HSMLINK_SM2),
        (0x8000_8100, CKM_HSMLINK_SM2_SM3),
        (0x8000_8200, CKM_HSMLINK_SM2_ENCRYPT),
        (0x8000_0005, CKM_HSMLINK_SM3),
        (0x8000_0107, CKM_HSMLINK_SM4_KEY_GEN),
        (0x8000_0108, CKM_HSMLINK_SM4_ECB),
        (0x8000_0109, CKM_HSMLINK_SM4_CBC),
        (0x8000_010C, CKM_HSMLINK_SM4_CBC_PAD),
    ],
};

/// Thales Luna HSMs' PKCS#11 module (firmware 7).
pub const LUNA: SmProfile = SmProfile {
    name: "luna",
    key_types: &[
        (0x8000_0016, CKK_HSMLINK_SM2),
        (0x8000_0015, CKK_HSMLINK_SM4),
    ],
    mechanisms: &[
        (0x8000_0B20, CKM_HSMLINK_SM2_KEY_PAIR_GEN),
        (0x8000_0B21, CKM_HSMLINK_SM2),
        (0x8000_0B22, CKM_HSMLINK_SM2_SM3),
        (0x8000_0B01, CKM_HSMLINK_SM3),
        (0x8000_0B02, CKM_HSMLINK_SM3_HMAC),
        (0x8000_0B10, CKM_HSMLINK_SM4_KEY_GEN),
        (0x8000_0B11, CKM_HSMLINK_SM4_ECB),
        (0x8000_0B12, CKM_HSMLINK_SM4_CBC),
        (0x8000_0B13, CKM_HSMLINK_SM4_CBC_PAD),
    ],
};

/// Every profile `sm_profile` may name.
pub const ALL: [SmProfile; 4] = [HSMLINK, SANSEC, TASS, LUNA];

impl Default for SmProfile {
    fn default() -> Self {
        HSMLINK
    }
}

impl SmProfile {
    /// The profile called `name` (`sm_profile` in `client.toml`).
    pub fn named(name: &str) -> Option<Self> {
        ALL.into_iter().find(|profile| profile.name == name)
    }

    /// The names `sm_profile` accepts, for error messages.
    pub fn names() -> String {
        ALL.map(|profile| profile.name).join(", ")
    }

    pub fn mechanism_in(&self, mechanism: u64) -> u64 {
        to_hsmlink(self.mechanisms, mechanism)
    }

    pub fn mechanism_out(&self, mechanism: u64) -> u64 {
        to_vendor(self.mechanisms, mechanism)
    }

    pub fn key_type_in(&self, key_type: u64) -> u64 {
        to_hsmlink(self.key_types, key_type)
    }

    pub fn key_type_out(&self, key_type: u64) -> u64 {
        to_vendor(self.key_types, key_type)
    }

    /// A template from the application, in hsmlink's numbers.
    pub fn template_in(&self, mut template: Vec<Attribute>) -> Vec<Attribute> {
        if self.is_identity() {
            return template;
        }
        for attribute in &mut template {
            self.translate(attribute.attr_type, &mut attribute.value, Direction::In);
        }
        template
    }

    /// The server's answer to `C_GetAttributeValue`, in the vendor's numbers.
    pub fn results_out(
        &self,
        types: &[AttributeType],
        mut results: Vec<AttributeResult>,
    ) -> Vec<AttributeResult> {
        if self.is_identity() {
            return results;
        }
        for (attr_type, result) in types.iter().zip(&mut results) {
            if let AttributeResult::Value(value) = result {
                self.translate(*attr_type, value, Direction::Out);
            }
        }
        results
    }

    fn is_identity(&self) -> bool {
        self.key_types.is_empty() && self.mechanisms.is_empty()
    }

    fn translate(
        &self,
        attr_type: AttributeType,
        value: &mut AttributeValue,
        direction: Direction,
    ) {
        let (key_type, mechanism): (Translate, Translate) = match direction {
            Direction::In => (Self::key_type_in, Self::mechanism_in),
            Direction::Out => (Self::key_type_out, Self::mechanism_out),
        };
        #[allow(clippy::useless_conversion)] // CK_ULONG is u32 on some targets
        let is = |cka: cryptoki_sys::CK_ATTRIBUTE_TYPE| attr_type.0 == u64::from(cka);
        match value {
            AttributeValue::Ulong(number) if is(cryptoki_sys::CKA_KEY_TYPE) => {
                *number = key_type(self, *number);
            }
            AttributeValue::Ulong(number) if is(cryptoki_sys::CKA_KEY_GEN_MECHANISM) => {
                *number = mechanism(self, *number);
            }
            AttributeValue::Mechanisms(list) => {
                for entry in list.iter_mut() {
                    *entry = MechanismType(mechanism(self, entry.0));
                }
            }
            AttributeValue::Template(members) => {
                for member in members.iter_mut() {
                    self.translate(member.attr_type, &mut member.value, direction);
                }
            }
            _ => {}
        }
    }
}

/// One of the number translations of a profile.
type Translate = fn(&SmProfile, u64) -> u64;

#[derive(Clone, Copy)]
enum Direction {
    In,
    Out,
}

fn to_hsmlink(table: &[(u64, u64)], number: u64) -> u64 {
    table
        .iter()
        .find(|(vendor, _)| *vendor == number)
        .map_or(number, |(_, ours)| *ours)
}

fn to_vendor(table: &[(u64, u64)], number: u64) -> u64 {
    table
        .iter()
        .find(|(_, ours)| *ours == number)
        .map_or(number, |(vendor, _)| *vendor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn each_table_is_a_bijection_onto_hsmlink_numbers() {
        let ours: BTreeSet<u64> = hsmlink_protocol::vendor::ALL.iter().map(|c| c.1).collect();
        for profile in ALL {
            for table in [profile.key_types, profile.mechanisms] {
                let vendor: BTreeSet<u64> = table.iter().map(|p| p.0).collect();
                let mapped: BTreeSet<u64> = table.iter().map(|p| p.1).collect();
                assert_eq!(
                    vendor.len(),
                    table.len(),
                    "{}: vendor number twice",
                    profile.name
                );
                assert_eq!(
                    mapped.len(),
                    table.len(),
                    "{}: hsmlink number twice",
                    profile.name
                );
                assert!(
                    mapped.is_subset(&ours),
                    "{}: unknown hsmlink number",
                    profile.name
                );
                // A vendor number must never shadow one of ours, or an
                // application using hsmlink's header would be rerouted.
                assert!(vendor.is_disjoint(&ours), "{}", profile.name);
                for (vendor, hsmlink) in table {
                    assert!(
                        *vendor >= 0x8000_0000,
                        "{}: not vendor-defined",
                        profile.name
                    );
                    assert_eq!(to_hsmlink(table, *vendor), *hsmlink);
                    assert_eq!(to_vendor(table, *hsmlink), *vendor);
                }
            }
        }
    }

    #[test]
    fn names_resolve_and_unknown_names_do_not() {
        assert_eq!(SmProfile::named("sansec"), Some(SANSEC));
        assert_eq!(SmProfile::named("hsmlink"), Some(HSMLINK));
        assert_eq!(SmProfile::named("Sansec"), None);
        assert_eq!(SmProfile::names(), "hsmlink, sansec, tass, luna");
    }

    #[test]
    fn templates_translate_both_ways_and_leave_the_rest() {
        let template = vec![
            Attribute::new(
                cryptoki_sys::CKA_KEY_TYPE,
                AttributeValue::Ulong(0x8000_0004),
            ),
            Attribute::new(cryptoki_sys::CKA_CLASS, AttributeValue::Ulong(0x8000_0004)),
            Attribute::new(
                cryptoki_sys::CKA_ALLOWED_MECHANISMS,
                AttributeValue::Mechanisms(vec![
                    MechanismType(0x8000_8100),
                    MechanismType(cryptoki_sys::CKM_ECDSA),
                ]),
            ),
            Attribute::new(
                cryptoki_sys::CKA_DERIVE_TEMPLATE,
                AttributeValue::Template(vec![Attribute::new(
                    cryptoki_sys::CKA_KEY_TYPE,
                    AttributeValue::Ulong(0x8000_0106),
                )]),
            ),
        ];
        let inbound = SANSEC.template_in(template.clone());
        assert_eq!(inbound[0].value, AttributeValue::Ulong(CKK_HSMLINK_SM2));
        assert_eq!(
            inbound[1].value,
            AttributeValue::Ulong(0x8000_0004),
            "not a key type"
        );
        assert_eq!(
            inbound[2].value,
            AttributeValue::Mechanisms(vec![
                MechanismType(CKM_HSMLINK_SM2_SM3),
                MechanismType(cryptoki_sys::CKM_ECDSA)
            ])
        );
        let AttributeValue::Template(nested) = &inbound[3].value else {
            panic!("{:?}", inbound[3]);
        };
        assert_eq!(nested[0].value, AttributeValue::Ulong(CKK_HSMLINK_SM4));

        let types: Vec<AttributeType> = inbound.iter().map(|a| a.attr_type).collect();
        let results = inbound
            .iter()
            .map(|a| AttributeResult::Value(a.value.clone()))
            .chain([AttributeResult::Sensitive])
            .collect();
        let outbound = SANSEC.results_out(&types, results);
        for (result, original) in outbound.iter().zip(&template) {
            assert_eq!(result, &AttributeResult::Value(original.value.clone()));
        }
        assert_eq!(outbound[4], AttributeResult::Sensitive);
    }

    #[test]
    fn the_default_profile_changes_nothing() {
        assert_eq!(HSMLINK.mechanism_in(0x8000_8100), 0x8000_8100);
        assert_eq!(HSMLINK.key_type_out(CKK_HSMLINK_SM2), CKK_HSMLINK_SM2);
    }
}
