//! Failed-login throttling per source address (`[auth_failures]`).
//!
//! After `max_failures` failed authentications from one address within `window` (counted from
//! the first failure of the window), the address is blocked for `block`: its CONNECTs are
//! refused before any credential is checked (CONNACK 0x8A "Banned", 3.1.1: 5 "not authorised"),
//! whatever they carry, a right password included. When the block ends the count starts afresh.
//! Successful logins are never counted and do not reset the count (or one valid account would
//! let an attacker guess another's password without limit). Nor are refusals that say nothing
//! about the client's credentials: a full hashing queue, an unreachable HTTP auth service.
//!
//! Memory is bounded: at most `max_addresses` addresses are tracked. When a new one arrives and
//! the table is full, stale records (window over, not blocked) go first, then the least recently
//! touched one (which may lift a block early: the price of a bounded table).
//!
//! IPv4-mapped IPv6 addresses count as their IPv4 address. Behind a proxy that hides client
//! addresses (no PROXY protocol), every client shares the proxy's address: one client's wrong
//! passwords then block everyone, so set `max = 0` there or enable `proxy_protocol`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How the throttle counts and blocks. Off when `max_failures`, `block` or `max_addresses` is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleSettings {
    /// Failures within `window` that block an address.
    pub max_failures: u32,
    /// The counting window, from the first failure in it.
    pub window: Duration,
    /// How long a blocked address is refused.
    pub block: Duration,
    /// Most addresses tracked at once.
    pub max_addresses: usize,
    /// Never count or block loopback addresses (local processes, and every client of a proxy
    /// on the same host that does not use the PROXY protocol).
    pub exempt_loopback: bool,
}

impl ThrottleSettings {
    /// Settings that never block.
    pub const OFF: Self = Self {
        max_failures: 0,
        window: Duration::ZERO,
        block: Duration::ZERO,
        max_addresses: 0,
        exempt_loopback: true,
    };

    /// Whether the throttle can block anything.
    #[must_use]
    pub fn enabled(&self) -> bool {
        self.max_failures > 0 && !self.block.is_zero() && self.max_addresses > 0
    }

    /// Whether `ip` is counted and can be blocked.
    #[must_use]
    pub fn applies_to(&self, ip: IpAddr) -> bool {
        self.enabled() && !(self.exempt_loopback && ip.is_loopback())
    }
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    window_start: Instant,
    blocked_until: Option<Instant>,
    touched: Instant,
}

impl Record {
    fn stale(&self, now: Instant, window: Duration) -> bool {
        self.blocked_until.is_none_or(|t| t <= now)
            && now.saturating_duration_since(self.window_start) >= window
    }
}

#[derive(Debug)]
struct Inner {
    settings: ThrottleSettings,
    addrs: HashMap<IpAddr, Record>,
}

/// Per-address failure counts and blocks (see the module docs). Thread-safe; no lock is held
/// beyond one call.
#[derive(Debug)]
pub struct Throttle {
    inner: Mutex<Inner>,
}

impl Throttle {
    /// A throttle with these settings and nothing tracked.
    #[must_use]
    pub fn new(settings: ThrottleSettings) -> Self {
        Self {
            inner: Mutex::new(Inner {
                settings,
                addrs: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies new settings (reload). Counts and blocks in progress are kept; turning the
    /// throttle off forgets them, and a smaller `max_addresses` drops the oldest records.
    pub fn configure(&self, settings: ThrottleSettings) {
        let mut g = self.lock();
        g.settings = settings;
        if !settings.enabled() {
            g.addrs.clear();
        }
        while g.addrs.len() > settings.max_addresses {
            evict_oldest(&mut g.addrs);
        }
    }

    /// The current settings.
    #[must_use]
    pub fn settings(&self) -> ThrottleSettings {
        self.lock().settings
    }

    /// How much longer `ip` stays blocked, or `None` if it is not blocked.
    pub fn blocked_for(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let ip = ip.to_canonical();
        let mut g = self.lock();
        if !g.settings.applies_to(ip) {
            return None;
        }
        let rec = g.addrs.get_mut(&ip)?;
        match rec.blocked_until {
            Some(until) if until > now => Some(until - now),
            Some(_) => {
                // The block is over: count afresh.
                rec.blocked_until = None;
                rec.failures = 0;
                rec.window_start = now;
                None
            }
            None => None,
        }
    }

    /// Counts a failed authentication from `ip`; returns `true` if it blocked the address.
    pub fn record_failure(&self, ip: IpAddr, now: Instant) -> bool {
        let ip = ip.to_canonical();
        let mut g = self.lock();
        let s = g.settings;
        if !s.applies_to(ip) {
            return false;
        }
        if !g.addrs.contains_key(&ip) && g.addrs.len() >= s.max_addresses {
            g.addrs.retain(|_, r| !r.stale(now, s.window));
            if g.addrs.len() >= s.max_addresses {
                evict_oldest(&mut g.addrs);
            }
        }
        let rec = g.addrs.entry(ip).or_insert(Record {
            failures: 0,
            window_start: now,
            blocked_until: None,
            touched: now,
        });
        rec.touched = now;
        if let Some(until) = rec.blocked_until {
            if until > now {
                return false; // already blocked (a check that was queued before the block)
            }
            rec.blocked_until = None;
            rec.failures = 0;
            rec.window_start = now;
        }
        if now.saturating_duration_since(rec.window_start) >= s.window {
            rec.failures = 0;
            rec.window_start = now;
        }
        rec.failures += 1;
        if rec.failures >= s.max_failures {
            rec.blocked_until = Some(now + s.block);
            rec.failures = 0;
            return true;
        }
        false
    }

    /// Number of addresses tracked.
    #[must_use]
    pub fn tracked(&self) -> usize {
        self.lock().addrs.len()
    }
}

fn evict_oldest(addrs: &mut HashMap<IpAddr, Record>) {
    if let Some(oldest) = addrs
        .iter()
        .min_by_key(|(_, r)| r.touched)
        .map(|(ip, _)| *ip)
    {
        addrs.remove(&oldest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn settings(max: u32, max_addresses: usize) -> ThrottleSettings {
        ThrottleSettings {
            max_failures: max,
            window: Duration::from_secs(60),
            block: Duration::from_secs(300),
            max_addresses,
            exempt_loopback: true,
        }
    }

    #[test]
    fn loopback_is_exempt_unless_configured() {
        let t = Throttle::new(settings(1, 100));
        let now = Instant::now();
        for ip in [ip("127.0.0.1"), ip("127.9.9.9"), ip("::1")] {
            assert!(!t.record_failure(ip, now));
            assert!(!t.record_failure(ip, now));
            assert_eq!(t.blocked_for(ip, now), None, "{ip}");
        }
        t.configure(ThrottleSettings {
            exempt_loopback: false,
            ..settings(1, 100)
        });
        assert!(t.record_failure(ip("127.0.0.1"), now));
        assert!(t.blocked_for(ip("127.0.0.1"), now).is_some());
    }

    #[test]
    fn blocks_after_k_failures_and_recovers() {
        let t = Throttle::new(settings(3, 100));
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        assert!(!t.record_failure(a, t0));
        assert!(!t.record_failure(a, t0 + Duration::from_secs(1)));
        assert_eq!(t.blocked_for(a, t0 + Duration::from_secs(2)), None);
        assert!(
            t.record_failure(a, t0 + Duration::from_secs(2)),
            "third blocks"
        );
        assert_eq!(
            t.blocked_for(a, t0 + Duration::from_secs(3)),
            Some(Duration::from_secs(299))
        );
        assert_eq!(
            t.blocked_for(ip("192.0.2.2"), t0),
            None,
            "others unaffected"
        );
        // After the block: free again, and the count starts afresh.
        let later = t0 + Duration::from_secs(303);
        assert_eq!(t.blocked_for(a, later), None);
        assert!(!t.record_failure(a, later));
        assert!(!t.record_failure(a, later));
        assert!(t.record_failure(a, later));
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let t = Throttle::new(settings(3, 100));
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        t.record_failure(a, t0);
        t.record_failure(a, t0 + Duration::from_secs(30));
        // The window (from the first failure) is over: this is the first of a new one.
        assert!(!t.record_failure(a, t0 + Duration::from_secs(61)));
        assert!(!t.record_failure(a, t0 + Duration::from_secs(62)));
        assert!(t.record_failure(a, t0 + Duration::from_secs(63)));
    }

    #[test]
    fn mapped_ipv6_counts_as_ipv4() {
        let t = Throttle::new(settings(2, 100));
        let t0 = Instant::now();
        t.record_failure(ip("::ffff:192.0.2.7"), t0);
        assert!(t.record_failure(ip("192.0.2.7"), t0));
        assert!(t.blocked_for(ip("::ffff:192.0.2.7"), t0).is_some());
    }

    #[test]
    fn table_is_bounded_and_forgets_the_oldest() {
        let t = Throttle::new(settings(2, 3));
        let t0 = Instant::now();
        for (i, a) in ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
            .iter()
            .enumerate()
        {
            t.record_failure(ip(a), t0 + Duration::from_secs(i as u64));
        }
        assert_eq!(t.tracked(), 3);
        // 10.0.0.1 was forgotten: one more failure does not block it; 10.0.0.3 is remembered.
        assert!(!t.record_failure(ip("10.0.0.1"), t0 + Duration::from_secs(5)));
        assert!(t.record_failure(ip("10.0.0.3"), t0 + Duration::from_secs(5)));
        assert_eq!(t.tracked(), 3);
        // Stale records (window over, not blocked) go before live ones.
        let late = t0 + Duration::from_secs(200);
        t.record_failure(ip("10.0.0.9"), late);
        assert!(t.blocked_for(ip("10.0.0.3"), late).is_some(), "block kept");
    }

    #[test]
    fn off_when_zero_and_reconfigurable() {
        let t = Throttle::new(settings(0, 100));
        let t0 = Instant::now();
        for _ in 0..10 {
            assert!(!t.record_failure(ip("10.0.0.1"), t0));
        }
        assert_eq!(t.tracked(), 0);
        t.configure(settings(1, 100));
        assert!(t.record_failure(ip("10.0.0.1"), t0));
        assert!(t.blocked_for(ip("10.0.0.1"), t0).is_some());
        t.configure(ThrottleSettings::OFF);
        assert_eq!(t.blocked_for(ip("10.0.0.1"), t0), None);
        assert_eq!(t.tracked(), 0);
    }
}
