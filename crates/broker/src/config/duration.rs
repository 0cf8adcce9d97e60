//! Mosquitto's duration syntax ("30m", "2h", "14d", "1w"), used by several keys.

use std::time::Duration;

/// Parses Mosquitto's duration syntax: a number followed by `s`, `m`, `h`, `d`, `w` or `y`.
///
/// # Errors
/// A message saying what was expected.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let err = || format!("`{s}` is not a duration like \"30m\", \"2h\", \"14d\" or \"1w\"");
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| err())?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "y" => 365 * 86_400,
        _ => return Err(err()),
    };
    Ok(Duration::from_secs(n.saturating_mul(secs)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1w"), Ok(Duration::from_secs(604_800)));
        assert!(parse_duration("2 hours").is_err());
        assert!(parse_duration("h").is_err());
    }
}
