//! The sampler behind `/monitor` (history) and `/monitor_current` (now).
//!
//! One task reads `BrokerHandle::stats()` every second into a short ring ([`SHORT_SAMPLES`]),
//! so that `/monitor_current`'s message rates follow the broker within seconds; every
//! [`LONG_EVERY`] seconds it also appends a [`Sample`] (gauges, and the counters' growth since
//! the previous sample) to a ring of [`LONG_SAMPLES`] = 24 h. Memory is fixed (~8,640 samples of
//! ten numbers); the work is one `stats()` a second.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hermod_broker::api::Stats;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// Seconds between two history samples.
pub(crate) const LONG_EVERY: u64 = 10;
/// History kept: 24 h of 10 s samples.
pub(crate) const LONG_SAMPLES: usize = 8_640;
/// Seconds of 1 s ticks kept for the current rates.
pub(crate) const SHORT_SAMPLES: usize = 30;
/// The window `/monitor_current` computes rates over.
const RATE_WINDOW: Duration = Duration::from_secs(5);

/// One history sample, as `/monitor` answers it.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub(crate) struct Sample {
    /// Unix milliseconds.
    pub(crate) time_stamp: u64,
    pub(crate) connections: u64,
    pub(crate) sessions: u64,
    pub(crate) subscriptions: u64,
    pub(crate) topics: u64,
    pub(crate) retained: u64,
    /// Messages received within this sample's period.
    pub(crate) received: u64,
    pub(crate) sent: u64,
    pub(crate) dropped: u64,
}

#[derive(Debug, Clone, Copy)]
struct Tick {
    at: Instant,
    stats: Stats,
}

/// The rings.
#[derive(Debug, Default)]
pub(crate) struct Monitor {
    long: Mutex<VecDeque<Sample>>,
    short: Mutex<VecDeque<Tick>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Messages per second: the counters' growth between two readings.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Rates {
    pub(crate) received: f64,
    pub(crate) sent: f64,
    pub(crate) dropped: f64,
}

impl Monitor {
    /// Samples until `stop`.
    pub(crate) async fn run(state: crate::state::AppState, stop: CancellationToken) {
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut previous: Option<Stats> = None;
        let mut n: u64 = 0;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let stats = state.handle.stats();
            state.monitor.tick(Instant::now(), stats);
            if n.is_multiple_of(LONG_EVERY) {
                state
                    .monitor
                    .record(unix_millis(), &stats, previous.as_ref(), stats.topics);
                previous = Some(stats);
            }
            n += 1;
        }
    }

    fn tick(&self, at: Instant, stats: Stats) {
        let mut short = lock(&self.short);
        if short.len() >= SHORT_SAMPLES {
            short.pop_front();
        }
        short.push_back(Tick { at, stats });
    }

    /// Appends a history sample (`previous`: the stats of the sample before, for the deltas).
    pub(crate) fn record(&self, ms: u64, s: &Stats, previous: Option<&Stats>, topics: usize) {
        let delta = |f: fn(&Stats) -> u64| previous.map_or(0, |p| f(s).saturating_sub(f(p)));
        let sample = Sample {
            time_stamp: ms,
            connections: s.connections,
            sessions: s.sessions as u64,
            subscriptions: s.subscriptions as u64,
            topics: topics as u64,
            retained: s.retained as u64,
            received: delta(|s| s.messages_received),
            sent: delta(|s| s.messages_sent),
            dropped: delta(|s| s.messages_dropped),
        };
        let mut long = lock(&self.long);
        if long.len() >= LONG_SAMPLES {
            long.pop_front();
        }
        long.push_back(sample);
    }

    /// History samples taken at or after `since_ms`, oldest first.
    pub(crate) fn history(&self, since_ms: u64) -> Vec<Sample> {
        lock(&self.long)
            .iter()
            .filter(|s| s.time_stamp >= since_ms)
            .copied()
            .collect()
    }

    /// Rates between the 1 s tick about [`RATE_WINDOW`] ago (or the oldest one) and `now`.
    pub(crate) fn rates(&self, now: Instant, current: &Stats) -> Rates {
        let short = lock(&self.short);
        let base = short
            .iter()
            .find(|t| now.duration_since(t.at) <= RATE_WINDOW)
            .or_else(|| short.back());
        let Some(base) = base else {
            return Rates::default();
        };
        let secs = now.duration_since(base.at).as_secs_f64();
        if secs < 0.5 {
            return Rates::default();
        }
        let rate = |f: fn(&Stats) -> u64| f(current).saturating_sub(f(&base.stats)) as f64 / secs;
        Rates {
            received: rate(|s| s.messages_received),
            sent: rate(|s| s.messages_sent),
            dropped: rate(|s| s.messages_dropped),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(received: u64) -> Stats {
        Stats {
            connections: 1,
            sessions: 2,
            subscriptions: 3,
            retained: 4,
            messages_received: received,
            messages_sent: 0,
            messages_dropped: 0,
            messages_expired: 0,
            store_available: true,
            ..Stats::default()
        }
    }

    #[test]
    fn history_keeps_24h_of_deltas() {
        let m = Monitor::default();
        let mut prev: Option<Stats> = None;
        for i in 0..(LONG_SAMPLES as u64 + 10) {
            let s = stats(i * 7);
            m.record(i * 10_000, &s, prev.as_ref(), 5);
            prev = Some(s);
        }
        let all = m.history(0);
        assert_eq!(all.len(), LONG_SAMPLES);
        assert_eq!(all[0].time_stamp, 10 * 10_000);
        assert!(all.iter().all(|s| s.received == 7 && s.topics == 5));
        assert_eq!(m.history((LONG_SAMPLES as u64 + 8) * 10_000).len(), 2);
    }

    #[test]
    fn rates_are_per_second_over_the_window() {
        let m = Monitor::default();
        let t0 = Instant::now();
        m.tick(t0, stats(100));
        let r = m.rates(t0 + Duration::from_secs(2), &stats(300));
        assert!((r.received - 100.0).abs() < 1e-9, "{r:?}");
        assert_eq!(m.rates(t0, &stats(300)), Rates::default());
    }
}
