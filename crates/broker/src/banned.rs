//! Banned clients: CONNECTs refused by client id, username or peer address (one address or a
//! CIDR network, IPv4 or IPv6), each ban optionally ending at a UTC time.
//!
//! ```toml
//! [[banned]]
//! client_id = "evil-device"
//! [[banned]]
//! address = "10.1.0.0/16"
//! until = "2027-01-01T00:00:00Z"     # RFC 3339; a TOML date-time (unquoted) works too
//! ```
//!
//! A banned client gets CONNACK 0x8A "Banned" (3.1.1: return code 5 "not authorised") before any
//! credential is checked. The client id checked is the one the broker uses (assigned when the
//! CONNECT had none), the username is the CONNECT's, the address is the peer's (the PROXY
//! protocol source when the listener uses it). IPv4-mapped IPv6 peers match IPv4 entries.
//!
//! [`Banned`] holds the entries from the config file and entries added at run time
//! ([`Banned::add`]); a reload replaces the former and keeps the latter. Checks scan the list
//! (it is meant for tens or hundreds of entries, not a blocklist of millions).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::{PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// An IPv4 or IPv6 network: `10.1.0.0/16`, `2001:db8::/32`; a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    /// The network address (host bits cleared).
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// The network of `addr` with `prefix` leading bits (host bits are cleared).
    ///
    /// # Errors
    /// A prefix longer than the address.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, String> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(format!("prefix length /{prefix} is longer than {max} bits"));
        }
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from_bits(a.to_bits() & mask32(prefix))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from_bits(a.to_bits() & mask128(prefix))),
        };
        Ok(Self { addr, prefix })
    }

    /// Whether `ip` is in this network (an IPv4-mapped IPv6 address counts as IPv4).
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(a)) => a.to_bits() & mask32(self.prefix) == net.to_bits(),
            (IpAddr::V6(net), IpAddr::V6(a)) => a.to_bits() & mask128(self.prefix) == net.to_bits(),
            _ => false,
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad = |why: &str| format!("`{s}` is not an address or CIDR network ({why})");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => {
                let prefix: u8 = p
                    .parse()
                    .map_err(|_| bad("the prefix length is not a number"))?;
                (a, Some(prefix))
            }
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
        let prefix = prefix.unwrap_or(if addr.is_ipv4() { 32 } else { 128 });
        IpNet::new(addr, prefix).map_err(|e| bad(&e))
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// What a ban matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BanRule {
    /// The client identifier (as the broker uses it, assigned ones included).
    ClientId(String),
    /// The CONNECT username.
    Username(String),
    /// The peer address.
    Address(IpNet),
}

impl fmt::Display for BanRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BanRule::ClientId(c) => write!(f, "client_id {c:?}"),
            BanRule::Username(u) => write!(f, "username {u:?}"),
            BanRule::Address(n) => write!(f, "address {n}"),
        }
    }
}

/// One ban: a rule and, optionally, when it ends (unix seconds, UTC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "BanToml", into = "BanToml")]
pub struct BanEntry {
    /// What is banned.
    pub rule: BanRule,
    /// End of the ban, seconds since the Unix epoch; `None`: never ends.
    pub until: Option<i64>,
}

impl BanEntry {
    /// Whether the ban is in force at `now` (unix seconds).
    #[must_use]
    pub fn active_at(&self, now: i64) -> bool {
        self.until.is_none_or(|u| now < u)
    }
}

impl fmt::Display for BanEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.until {
            Some(u) => write!(f, "{} until {}", self.rule, format_rfc3339(u)),
            None => write!(f, "{}", self.rule),
        }
    }
}

/// A `[[banned]]` table as written.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BanToml {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    until: Option<Until>,
}

impl TryFrom<BanToml> for BanEntry {
    type Error = String;

    fn try_from(t: BanToml) -> Result<Self, String> {
        BanEntry::from_toml(t).map_err(|m| format!("[[banned]]: {m}"))
    }
}

/// Deserializes the `[[banned]]` list; an invalid entry's error names its index
/// (`banned[2]: ...`; toml adds the file's line).
pub(crate) fn deserialize_list<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<BanEntry>, D::Error> {
    Vec::<BanToml>::deserialize(d)?
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            BanEntry::from_toml(t)
                .map_err(|m| serde::de::Error::custom(format!("banned[{i}]: {m}")))
        })
        .collect()
}

impl BanEntry {
    fn from_toml(t: BanToml) -> Result<Self, String> {
        let nonempty = |key: &str, v: String| {
            if v.is_empty() {
                Err(format!("`{key}`: must not be empty"))
            } else {
                Ok(v)
            }
        };
        let rule = match (t.client_id, t.username, t.address) {
            (Some(c), None, None) => BanRule::ClientId(nonempty("client_id", c)?),
            (None, Some(u), None) => BanRule::Username(nonempty("username", u)?),
            (None, None, Some(a)) => {
                BanRule::Address(a.parse().map_err(|e| format!("`address`: {e}"))?)
            }
            (c, u, a) => {
                let given: Vec<&str> = [
                    ("client_id", c.is_some()),
                    ("username", u.is_some()),
                    ("address", a.is_some()),
                ]
                .into_iter()
                .filter_map(|(k, on)| on.then_some(k))
                .collect();
                return Err(format!(
                    "give exactly one of `client_id`, `username`, `address` (found {})",
                    if given.is_empty() {
                        "none".to_owned()
                    } else {
                        given.join(", ")
                    }
                ));
            }
        };
        Ok(BanEntry {
            rule,
            until: t.until.map(|u| u.0),
        })
    }
}

impl From<BanEntry> for BanToml {
    fn from(e: BanEntry) -> Self {
        let mut t = BanToml {
            client_id: None,
            username: None,
            address: None,
            until: e.until.map(Until),
        };
        match e.rule {
            BanRule::ClientId(c) => t.client_id = Some(c),
            BanRule::Username(u) => t.username = Some(u),
            BanRule::Address(n) => t.address = Some(n.to_string()),
        }
        t
    }
}

/// `until`: an RFC 3339 date-time with `Z` or an offset, as a string or a TOML date-time.
struct Until(i64);

impl Serialize for Until {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_rfc3339(self.0))
    }
}

impl<'de> Deserialize<'de> for Until {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Until;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 UTC time such as \"2027-01-01T00:00:00Z\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Until, E> {
                parse_rfc3339(v)
                    .map(Until)
                    .map_err(|m| E::custom(format!("`until`: {m}")))
            }
            // A TOML date-time value (unquoted) arrives as a one-entry map holding its text.
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Until, A::Error> {
                let Some((_, text)) = map.next_entry::<String, String>()? else {
                    return Err(serde::de::Error::custom("`until`: empty value"));
                };
                self.visit_str(&text)
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses an RFC 3339 date-time (`2027-01-01T00:00:00Z`, `2027-01-01T02:00:00+02:00`,
/// fractional seconds allowed and ignored) into seconds since the Unix epoch.
///
/// # Errors
/// A message saying what is wrong.
pub fn parse_rfc3339(s: &str) -> Result<i64, String> {
    let err =
        |why: &str| format!("`{s}` is not an RFC 3339 time like \"2027-01-01T00:00:00Z\" ({why})");
    let b = s.trim().as_bytes();
    let num = |r: std::ops::Range<usize>| -> Result<i64, String> {
        let part = b.get(r).ok_or_else(|| err("too short"))?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return Err(err("expected digits"));
        }
        Ok(part.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let sep = |i: usize, ok: &[u8]| -> Result<(), String> {
        match b.get(i) {
            Some(c) if ok.contains(c) => Ok(()),
            _ => Err(err("unexpected character")),
        }
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    sep(4, b"-")?;
    sep(7, b"-")?;
    sep(10, b"Tt ")?;
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    sep(13, b":")?;
    sep(16, b":")?;
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return Err(err("expected digits after '.'"));
        }
    }
    let offset = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(c @ (b'+' | b'-')) if i + 6 == b.len() => {
            sep(i + 3, b":")?;
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return Err(err("offset out of range"));
            }
            let o = oh * 3600 + om * 60;
            if *c == b'+' { o } else { -o }
        }
        None => return Err(err("missing time zone: add Z for UTC")),
        _ => return Err(err("unexpected text after the seconds")),
    };
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(err("no such date"));
    }
    // 60: a leap second, counted as the last second of the minute.
    if hour > 23 || minute > 59 || second > 60 {
        return Err(err("no such time of day"));
    }
    let days = days_from_civil(year, month, day);
    Ok(days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset)
}

/// `secs` (since the Unix epoch) as `YYYY-MM-DDTHH:MM:SSZ`.
#[must_use]
pub fn format_rfc3339(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Seconds since the Unix epoch at `t`.
#[must_use]
pub fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

#[derive(Debug, Clone)]
struct Ban {
    entry: BanEntry,
    /// From the config file (replaced on reload), else added at run time.
    from_config: bool,
}

/// The ban list (see the module docs). Thread-safe.
#[derive(Debug, Default)]
pub struct Banned {
    bans: RwLock<Vec<Ban>>,
}

impl Banned {
    /// A list holding the config file's entries.
    #[must_use]
    pub fn new(config: &[BanEntry]) -> Self {
        let b = Self::default();
        b.replace_config(config);
        b
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Ban>> {
        self.bans.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the entries that came from the config file (reload); run-time entries stay.
    pub fn replace_config(&self, config: &[BanEntry]) {
        let mut bans = self.write();
        bans.retain(|b| !b.from_config);
        bans.extend(config.iter().map(|e| Ban {
            entry: e.clone(),
            from_config: true,
        }));
    }

    /// Adds a run-time ban (kept across reloads); replaces a run-time ban with the same rule.
    /// Expired bans are dropped on the way.
    pub fn add(&self, entry: BanEntry) {
        let now = unix_secs(SystemTime::now());
        let mut bans = self.write();
        bans.retain(|b| b.entry.active_at(now) && (b.from_config || b.entry.rule != entry.rule));
        bans.push(Ban {
            entry,
            from_config: false,
        });
    }

    /// Removes every ban with this rule (a config-file one comes back on the next reload if it
    /// is still in the file); returns whether there was one.
    pub fn remove(&self, rule: &BanRule) -> bool {
        let mut bans = self.write();
        let before = bans.len();
        bans.retain(|b| &b.entry.rule != rule);
        bans.len() != before
    }

    /// The ban in force at `now` that matches this client, if any.
    pub fn check(
        &self,
        client_id: &str,
        username: Option<&str>,
        peer: IpAddr,
        now: SystemTime,
    ) -> Option<BanEntry> {
        let now = unix_secs(now);
        let bans = self.bans.read().unwrap_or_else(PoisonError::into_inner);
        bans.iter()
            .map(|b| &b.entry)
            .filter(|e| e.active_at(now))
            .find(|e| match &e.rule {
                BanRule::ClientId(c) => c == client_id,
                BanRule::Username(u) => username == Some(u.as_str()),
                BanRule::Address(net) => net.contains(peer),
            })
            .cloned()
    }

    /// Every ban, config-file ones first (expired ones included until they are pruned).
    #[must_use]
    pub fn list(&self) -> Vec<BanEntry> {
        let bans = self.bans.read().unwrap_or_else(PoisonError::into_inner);
        let mut v: Vec<&Ban> = bans.iter().collect();
        v.sort_by_key(|b| !b.from_config);
        v.into_iter().map(|b| b.entry.clone()).collect()
    }
}

#[cfg(test)]
#[path = "banned_tests.rs"]
mod tests;
