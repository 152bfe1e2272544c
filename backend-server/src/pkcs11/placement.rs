//! Where a new `pkcs11` partition goes: the devices (tokens) that hold it,
//! one per HSM, chosen by the server when the admin API allocates a
//! partition with a replica count and no device list.
//!
//! A device holds one partition. Candidates are the configured devices no
//! live partition holds; replicas go to different HSMs (a device's HSM is
//! its `[[devices]]` module path: the tokens of one vendor library on one
//! appliance), the HSMs holding the fewest partitions first, so that
//! partitions spread over the pool; names break ties, so a choice is
//! reproducible.

use std::collections::{BTreeMap, BTreeSet};

/// A configured device as placement sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate<'a> {
    pub name: &'a str,
    /// The HSM the device is a token of.
    pub hsm: &'a str,
    /// Whether a live partition holds it.
    pub taken: bool,
}

/// Why no placement was found.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoPlacement {
    #[error("a partition needs at least one device")]
    Zero,
    #[error(
        "{wanted} devices on different HSMs are needed, {free} HSMs have a free device \
         (add [[devices]] entries, or ask for fewer replicas)"
    )]
    TooFew { wanted: usize, free: usize },
    #[error("device {0} is not configured or holds a partition already")]
    Unavailable(String),
}

/// `count` devices for a new partition, `first` (if named) among them and
/// first; the others on other HSMs, fewest partitions first.
pub fn choose<'a>(
    devices: &[Candidate<'a>],
    count: usize,
    first: Option<&str>,
) -> Result<Vec<&'a str>, NoPlacement> {
    if count == 0 {
        return Err(NoPlacement::Zero);
    }
    let mut held: BTreeMap<&str, usize> = BTreeMap::new();
    for d in devices {
        *held.entry(d.hsm).or_default() += usize::from(d.taken);
    }
    let mut chosen: Vec<&'a str> = Vec::new();
    let mut used_hsms: BTreeSet<&str> = BTreeSet::new();
    if let Some(first) = first {
        let d = devices
            .iter()
            .find(|d| d.name == first && !d.taken)
            .ok_or_else(|| NoPlacement::Unavailable(first.to_owned()))?;
        chosen.push(d.name);
        used_hsms.insert(d.hsm);
    }
    let mut free: Vec<&Candidate<'a>> = devices
        .iter()
        .filter(|d| !d.taken && !chosen.contains(&d.name))
        .collect();
    free.sort_by_key(|d| (held.get(d.hsm).copied().unwrap_or(0), d.hsm, d.name));
    for d in free {
        if chosen.len() == count {
            break;
        }
        if used_hsms.insert(d.hsm) {
            chosen.push(d.name);
        }
    }
    if chosen.len() < count {
        let free_hsms: BTreeSet<&str> =
            devices.iter().filter(|d| !d.taken).map(|d| d.hsm).collect();
        return Err(NoPlacement::TooFew {
            wanted: count,
            free: free_hsms.len(),
        });
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> Vec<Candidate<'static>> {
        let d = |name, hsm, taken| Candidate { name, hsm, taken };
        vec![
            d("a1", "hsm-a", true),
            d("a2", "hsm-a", false),
            d("b1", "hsm-b", false),
            d("b2", "hsm-b", false),
            d("c1", "hsm-c", true),
            d("c2", "hsm-c", true),
            d("c3", "hsm-c", false),
        ]
    }

    #[test]
    fn replicas_go_to_different_hsms_the_least_used_first() {
        // hsm-b holds nothing, hsm-a one partition, hsm-c two.
        assert_eq!(choose(&pool(), 1, None), Ok(vec!["b1"]));
        assert_eq!(choose(&pool(), 2, None), Ok(vec!["b1", "a2"]));
        assert_eq!(choose(&pool(), 3, None), Ok(vec!["b1", "a2", "c3"]));
        // Never two tokens of one HSM.
        assert_eq!(
            choose(&pool(), 4, None),
            Err(NoPlacement::TooFew { wanted: 4, free: 3 })
        );
    }

    #[test]
    fn a_named_first_device_stays_first() {
        assert_eq!(choose(&pool(), 2, Some("c3")), Ok(vec!["c3", "b1"]));
        assert_eq!(
            choose(&pool(), 2, Some("c1")),
            Err(NoPlacement::Unavailable("c1".into()))
        );
        assert_eq!(
            choose(&pool(), 1, Some("nope")),
            Err(NoPlacement::Unavailable("nope".into()))
        );
        assert_eq!(choose(&pool(), 0, None), Err(NoPlacement::Zero));
    }
}
