//! Limits against hostile tenants: how many connections a tenant (and the
//! server) may hold, and how fast one source address may guess PINs.
//!
//! - [`ConnectionLimits`]: counted in the transport. A connection counts
//!   from the moment its TCP connection is accepted (server-wide cap) and
//!   from its accepted hello (per-tenant cap) until it closes.
//! - [`LoginThrottle`]: wrong PINs per source IP address in a sliding
//!   window; a source that reaches the limit has every PIN-checking call
//!   refused (`CKR_FUNCTION_REJECTED`, without looking at the PIN) for a
//!   cool-down. Other sources are not affected. This comes on top of the
//!   token's own lockout (`max_pin_failures` wrong PINs in a row).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::names::TenantName;

/// Open connections: server-wide and per tenant.
#[derive(Debug)]
pub struct ConnectionLimits {
    max_total: usize,
    max_per_tenant: usize,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    tenants: HashMap<TenantName, usize>,
}

/// Why a connection was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The server holds `max_connections` connections.
    Server(usize),
    /// The tenant holds `max_connections_per_tenant` connections.
    Tenant(usize),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Server(max) => write!(f, "the server has its maximum of {max} connections"),
            Refusal::Tenant(max) => write!(
                f,
                "too many connections for this tenant (max_connections_per_tenant = {max})"
            ),
        }
    }
}

impl ConnectionLimits {
    pub fn new(max_total: usize, max_per_tenant: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_tenant,
            counts: Mutex::new(Counts::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One more connection on the server, or why not.
    pub fn open(self: &Arc<Self>) -> Result<ServerSlot, Refusal> {
        let mut counts = self.lock();
        if counts.total >= self.max_total {
            return Err(Refusal::Server(self.max_total));
        }
        counts.total += 1;
        Ok(ServerSlot {
            limits: self.clone(),
        })
    }

    /// One more connection for `tenant`, or why not.
    pub fn admit(self: &Arc<Self>, tenant: &TenantName) -> Result<TenantSlot, Refusal> {
        let mut counts = self.lock();
        let count = counts.tenants.entry(tenant.clone()).or_insert(0);
        if *count >= self.max_per_tenant {
            return Err(Refusal::Tenant(self.max_per_tenant));
        }
        *count += 1;
        Ok(TenantSlot {
            limits: self.clone(),
            tenant: tenant.clone(),
        })
    }

    /// The tenant's open (admitted) connections.
    pub fn tenant_count(&self, tenant: &TenantName) -> usize {
        self.lock().tenants.get(tenant).copied().unwrap_or(0)
    }

    /// Open connections on the server.
    pub fn total(&self) -> usize {
        self.lock().total
    }
}

/// A counted connection on the server; uncounted when dropped.
#[derive(Debug)]
pub struct ServerSlot {
    limits: Arc<ConnectionLimits>,
}

impl Drop for ServerSlot {
    fn drop(&mut self) {
        let mut counts = self.limits.lock();
        counts.total = counts.total.saturating_sub(1);
    }
}

/// A counted connection of a tenant; uncounted when dropped.
#[derive(Debug)]
pub struct TenantSlot {
    limits: Arc<ConnectionLimits>,
    tenant: TenantName,
}

impl Drop for TenantSlot {
    fn drop(&mut self) {
        let mut counts = self.limits.lock();
        if let Some(count) = counts.tenants.get_mut(&self.tenant) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.tenants.remove(&self.tenant);
            }
        }
    }
}

/// Settings of [`LoginThrottle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottleSettings {
    /// Wrong PINs from one source within `window` that start a cool-down;
    /// 0 turns the throttle off.
    pub max_failures: u32,
    pub window: Duration,
    pub cooldown: Duration,
}

impl ThrottleSettings {
    pub const DEFAULT: Self = Self {
        max_failures: 20,
        window: Duration::from_secs(60),
        cooldown: Duration::from_secs(300),
    };
}

/// Sources tracked at most; beyond, the quiet ones are forgotten first.
const MAX_SOURCES: usize = 16_384;

/// Wrong PINs per source address.
#[derive(Debug)]
pub struct LoginThrottle {
    settings: ThrottleSettings,
    sources: Mutex<HashMap<IpAddr, Source>>,
}

#[derive(Debug, Default)]
struct Source {
    /// When the recent wrong PINs came, oldest first (at most `max_failures`).
    failures: VecDeque<Instant>,
    blocked_until: Option<Instant>,
}

/// A source has just reached the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocked {
    pub failures: u32,
    pub cooldown: Duration,
}

impl LoginThrottle {
    pub fn new(settings: ThrottleSettings) -> Arc<Self> {
        Arc::new(Self {
            settings,
            sources: Mutex::new(HashMap::new()),
        })
    }

    pub fn settings(&self) -> ThrottleSettings {
        self.settings
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, Source>> {
        self.sources
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How long `source` stays refused, if it is in a cool-down.
    pub fn blocked(&self, source: IpAddr, now: Instant) -> Option<Duration> {
        if self.settings.max_failures == 0 {
            return None;
        }
        let mut sources = self.lock();
        let entry = sources.get_mut(&source)?;
        match entry.blocked_until {
            Some(until) if until > now => Some(until - now),
            Some(_) => {
                // Cool-down over: a clean slate.
                sources.remove(&source);
                None
            }
            None => None,
        }
    }

    /// Counts a wrong PIN from `source`; `Some` if this one starts a
    /// cool-down.
    pub fn failed(&self, source: IpAddr, now: Instant) -> Option<Blocked> {
        let max = self.settings.max_failures;
        if max == 0 {
            return None;
        }
        let mut sources = self.lock();
        if sources.len() >= MAX_SOURCES && !sources.contains_key(&source) {
            self.forget_quiet(&mut sources, now);
        }
        let entry = sources.entry(source).or_default();
        if entry.blocked_until.is_some_and(|until| until > now) {
            return None;
        }
        entry.blocked_until = None;
        let window = self.settings.window;
        while entry
            .failures
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            entry.failures.pop_front();
        }
        entry.failures.push_back(now);
        if entry.failures.len() >= max as usize {
            entry.failures.clear();
            entry.blocked_until = Some(now + self.settings.cooldown);
            return Some(Blocked {
                failures: max,
                cooldown: self.settings.cooldown,
            });
        }
        None
    }

    /// Drops the sources neither blocked nor with a failure in the window;
    /// if that is not enough, every source not blocked.
    fn forget_quiet(&self, sources: &mut HashMap<IpAddr, Source>, now: Instant) {
        let window = self.settings.window;
        sources.retain(|_, s| {
            s.blocked_until.is_some_and(|u| u > now)
                || s.failures
                    .back()
                    .is_some_and(|t| now.saturating_duration_since(*t) < window)
        });
        if sources.len() >= MAX_SOURCES {
            sources.retain(|_, s| s.blocked_until.is_some_and(|u| u > now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str) -> TenantName {
        TenantName::parse(name).unwrap()
    }

    #[test]
    fn tenants_are_capped_separately_and_slots_are_given_back() {
        let limits = ConnectionLimits::new(10, 2);
        let (a, b) = (tenant("alpha"), tenant("beta"));
        let a1 = limits.admit(&a).unwrap();
        let _a2 = limits.admit(&a).unwrap();
        assert_eq!(limits.admit(&a).unwrap_err(), Refusal::Tenant(2));
        let _b1 = limits.admit(&b).unwrap();
        assert_eq!(limits.tenant_count(&a), 2);
        drop(a1);
        assert_eq!(limits.tenant_count(&a), 1);
        assert!(limits.admit(&a).is_ok());
    }

    #[test]
    fn the_server_is_capped() {
        let limits = ConnectionLimits::new(2, 100);
        let s1 = limits.open().unwrap();
        let _s2 = limits.open().unwrap();
        assert_eq!(limits.open().unwrap_err(), Refusal::Server(2));
        drop(s1);
        assert_eq!(limits.total(), 1);
        assert!(limits.open().is_ok());
    }

    #[test]
    fn a_source_is_refused_for_the_cooldown_and_others_are_not() {
        let throttle = LoginThrottle::new(ThrottleSettings {
            max_failures: 3,
            window: Duration::from_secs(10),
            cooldown: Duration::from_secs(30),
        });
        let (bad, good): (IpAddr, IpAddr) =
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        assert_eq!(throttle.failed(bad, t0), None);
        assert_eq!(throttle.failed(bad, t0 + Duration::from_secs(1)), None);
        assert_eq!(throttle.failed(good, t0), None);
        let blocked = throttle.failed(bad, t0 + Duration::from_secs(2)).unwrap();
        assert_eq!(blocked.failures, 3);
        let t = t0 + Duration::from_secs(3);
        assert_eq!(throttle.blocked(bad, t), Some(Duration::from_secs(29)));
        assert_eq!(throttle.blocked(good, t), None);
        // Over: a clean slate.
        assert_eq!(throttle.blocked(bad, t0 + Duration::from_secs(33)), None);
        assert_eq!(throttle.failed(bad, t0 + Duration::from_secs(33)), None);
    }

    #[test]
    fn failures_outside_the_window_do_not_count() {
        let throttle = LoginThrottle::new(ThrottleSettings {
            max_failures: 2,
            window: Duration::from_secs(5),
            cooldown: Duration::from_secs(30),
        });
        let ip: IpAddr = "::1".parse().unwrap();
        let t0 = Instant::now();
        assert_eq!(throttle.failed(ip, t0), None);
        assert_eq!(throttle.failed(ip, t0 + Duration::from_secs(6)), None);
        assert!(throttle.failed(ip, t0 + Duration::from_secs(7)).is_some());
    }

    #[test]
    fn zero_turns_the_throttle_off() {
        let throttle = LoginThrottle::new(ThrottleSettings {
            max_failures: 0,
            ..ThrottleSettings::DEFAULT
        });
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..100 {
            assert_eq!(throttle.failed(ip, Instant::now()), None);
        }
        assert_eq!(throttle.blocked(ip, Instant::now()), None);
    }
}
