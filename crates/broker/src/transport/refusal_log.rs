//! [`RefusalLog`]: at most one warning a second about refused handshakes, per listener.

use std::time::{Duration, Instant};

/// Rate limit for the warnings about refused handshakes of one listener: at most one line per
/// [`RefusalLog::INTERVAL`], carrying how many refusals were not logged since the last line.
#[derive(Debug, Default)]
pub struct RefusalLog {
    state: std::sync::Mutex<RefusalLogState>,
}

#[derive(Debug, Default)]
struct RefusalLogState {
    last: Option<Instant>,
    suppressed: u64,
}

impl RefusalLog {
    /// The shortest time between two logged lines.
    pub const INTERVAL: Duration = Duration::from_secs(1);

    /// Records a refusal at `now`. `Some(n)` when it is to be logged, `n` being the refusals
    /// suppressed since the last logged one; `None` when it is suppressed (and counted).
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if state
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < Self::INTERVAL)
        {
            state.suppressed = state.suppressed.saturating_add(1);
            return None;
        }
        state.last = Some(now);
        Some(std::mem::take(&mut state.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_log_allows_one_line_a_second_and_counts_the_rest() {
        let log = RefusalLog::default();
        let t0 = Instant::now();
        assert_eq!(log.admit(t0), Some(0), "the first refusal is logged");
        assert_eq!(log.admit(t0 + Duration::from_millis(10)), None);
        assert_eq!(log.admit(t0 + Duration::from_millis(999)), None);
        assert_eq!(
            log.admit(t0 + Duration::from_secs(1)),
            Some(2),
            "a second later: logged with the 2 suppressed ones"
        );
        assert_eq!(log.admit(t0 + Duration::from_millis(1500)), None);
        assert_eq!(log.admit(t0 + Duration::from_secs(5)), Some(1));
        assert_eq!(log.admit(t0 + Duration::from_secs(9)), Some(0));
    }
}
