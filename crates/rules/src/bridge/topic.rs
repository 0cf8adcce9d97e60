//! Mosquitto's bridge `topic` lines: `pattern [[[out|in|both] qos] local_prefix remote_prefix]`,
//! and the mapping of topics between the local and the remote broker.

use hermod_proto::QoS;
use hermod_proto::topic::{matches, parse_shared, validate_topic_filter, validate_topic_name};

/// Which way a topic line forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Out,
    In,
    Both,
}

impl Direction {
    /// Local → remote.
    #[must_use]
    pub fn is_out(self) -> bool {
        matches!(self, Self::Out | Self::Both)
    }

    /// Remote → local.
    #[must_use]
    pub fn is_in(self) -> bool {
        matches!(self, Self::In | Self::Both)
    }
}

/// One parsed topic line. With an empty `pattern` the prefixes are whole topic names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMap {
    pub pattern: String,
    pub direction: Direction,
    pub qos: QoS,
    pub local_prefix: String,
    pub remote_prefix: String,
}

impl TopicMap {
    /// Parses one line: `pattern [[[out|in|both] qos] local_prefix remote_prefix]`, `""` for
    /// an empty pattern or prefix.
    ///
    /// # Errors
    /// What is wrong with the line.
    pub fn parse(line: &str) -> Result<Self, String> {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let unquote = |t: &str| {
            if t == "\"\"" {
                String::new()
            } else {
                t.to_owned()
            }
        };
        let (pattern, direction, qos, local, remote) = match tokens.as_slice() {
            [] => return Err("empty topic line".into()),
            [p] => (*p, "out", "0", "", ""),
            [p, d] => (*p, *d, "0", "", ""),
            [p, d, q] => (*p, *d, *q, "", ""),
            [_, _, _, _] => return Err("a local prefix needs a remote prefix too".into()),
            [p, d, q, l, r] => (*p, *d, *q, *l, *r),
            _ => return Err("too many fields (pattern [[[out|in|both] qos] local remote])".into()),
        };
        let direction = match direction {
            "out" => Direction::Out,
            "in" => Direction::In,
            "both" => Direction::Both,
            other => return Err(format!("bad direction `{other}` (out, in or both)")),
        };
        let qos = match qos {
            "0" => QoS::AtMostOnce,
            "1" => QoS::AtLeastOnce,
            "2" => QoS::ExactlyOnce,
            other => return Err(format!("bad qos `{other}` (0, 1 or 2)")),
        };
        let map = Self {
            pattern: unquote(pattern),
            direction,
            qos,
            local_prefix: unquote(local),
            remote_prefix: unquote(remote),
        };
        map.check()?;
        Ok(map)
    }

    fn check(&self) -> Result<(), String> {
        for (which, prefix) in [
            ("local", &self.local_prefix),
            ("remote", &self.remote_prefix),
        ] {
            if prefix.contains(['+', '#']) {
                return Err(format!("{which} prefix `{prefix}` has a wildcard"));
            }
            if prefix.contains('\0') {
                return Err(format!("{which} prefix has a NUL character"));
            }
        }
        if self.pattern.is_empty() {
            if self.local_prefix.is_empty() || self.remote_prefix.is_empty() {
                return Err("an empty pattern (\"\") needs both prefixes (whole topics)".into());
            }
            return Ok(());
        }
        if validate_topic_filter(&self.pattern).is_err() {
            return Err(format!("`{}` is not a valid topic filter", self.pattern));
        }
        if matches!(parse_shared(&self.pattern), Ok(Some(_)) | Err(_)) {
            return Err("a shared subscription cannot be bridged".into());
        }
        for (which, filter) in [
            ("local", self.local_filter()),
            ("remote", self.remote_filter()),
        ] {
            if validate_topic_filter(&filter).is_err() {
                return Err(format!(
                    "{which} prefix and pattern make `{filter}`, not a filter"
                ));
            }
        }
        Ok(())
    }

    /// What to subscribe to locally (out) or to map from (in).
    #[must_use]
    pub fn local_filter(&self) -> String {
        format!("{}{}", self.local_prefix, self.pattern)
    }

    /// What to subscribe to on the remote (in).
    #[must_use]
    pub fn remote_filter(&self) -> String {
        format!("{}{}", self.remote_prefix, self.pattern)
    }

    /// The remote topic for a local one, if this line maps it out.
    #[must_use]
    pub fn map_out(&self, topic: &str) -> Option<String> {
        if !self.direction.is_out() {
            return None;
        }
        remap(
            topic,
            &self.pattern,
            &self.local_prefix,
            &self.remote_prefix,
        )
    }

    /// The local topic for a remote one, if this line maps it in.
    #[must_use]
    pub fn map_in(&self, topic: &str) -> Option<String> {
        if !self.direction.is_in() {
            return None;
        }
        remap(
            topic,
            &self.pattern,
            &self.remote_prefix,
            &self.local_prefix,
        )
    }
}

/// `from_prefix + rest` matching `from_prefix + pattern` becomes `to_prefix + rest`.
fn remap(topic: &str, pattern: &str, from_prefix: &str, to_prefix: &str) -> Option<String> {
    if pattern.is_empty() {
        return (topic == from_prefix).then(|| to_prefix.to_owned());
    }
    let rest = topic.strip_prefix(from_prefix)?;
    if rest.is_empty() || !matches(pattern, rest) {
        return None;
    }
    let mapped = format!("{to_prefix}{rest}");
    validate_topic_name(&mapped).ok().map(|()| mapped)
}

/// The first line of `maps` that maps `topic` out (local → remote), with it.
pub(crate) fn route_out<'a>(maps: &'a [TopicMap], topic: &str) -> Option<(&'a TopicMap, String)> {
    maps.iter().find_map(|m| m.map_out(topic).map(|t| (m, t)))
}

/// The first line of `maps` that maps `topic` in (remote → local), with it.
pub(crate) fn route_in<'a>(maps: &'a [TopicMap], topic: &str) -> Option<(&'a TopicMap, String)> {
    maps.iter().find_map(|m| m.map_in(topic).map(|t| (m, t)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn line(s: &str) -> TopicMap {
        TopicMap::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn topic_line_forms() {
        let m = line("a/#");
        assert_eq!((m.direction, m.qos), (Direction::Out, QoS::AtMostOnce));
        assert_eq!(
            (m.local_prefix.as_str(), m.remote_prefix.as_str()),
            ("", "")
        );
        let m = line("a/# in");
        assert_eq!((m.direction, m.qos), (Direction::In, QoS::AtMostOnce));
        let m = line("a/#  both   2");
        assert_eq!((m.direction, m.qos), (Direction::Both, QoS::ExactlyOnce));
        let m = line("sensors/# out 1 local/ site1/");
        assert_eq!(m.local_filter(), "local/sensors/#");
        assert_eq!(m.remote_filter(), "site1/sensors/#");
        assert_eq!(
            m.map_out("local/sensors/t").as_deref(),
            Some("site1/sensors/t")
        );
        assert_eq!(m.map_out("sensors/t"), None);
        assert_eq!(m.map_in("site1/sensors/t"), None, "out only");
        let m = line("cmd/# in 1 \"\" edge1/");
        assert_eq!(m.local_prefix, "");
        assert_eq!(m.map_in("edge1/cmd/reboot").as_deref(), Some("cmd/reboot"));
        assert_eq!(m.map_out("cmd/reboot"), None, "in only");
        let m = line("\"\" both 1 here/exact there/exact");
        assert_eq!(m.map_out("here/exact").as_deref(), Some("there/exact"));
        assert_eq!(m.map_in("there/exact").as_deref(), Some("here/exact"));
        assert_eq!(m.map_out("here/exact/more"), None);
        let m = line("x/+/y");
        assert_eq!(m.map_out("x/1/y").as_deref(), Some("x/1/y"));
        assert_eq!(m.map_out("x/1/z"), None);
    }

    #[test]
    fn bad_topic_lines() {
        for (l, why) in [
            ("", "empty"),
            ("a/# sideways", "bad direction `sideways`"),
            ("a/# out 3", "bad qos `3`"),
            ("a/# out x", "bad qos"),
            ("a/# out 1 local/", "needs a remote prefix"),
            (
                "a/# out 1 lo+cal/ r/",
                "local prefix `lo+cal/` has a wildcard",
            ),
            ("a/# out 1 l/ r/#/", "remote prefix `r/#/` has a wildcard"),
            ("a/#/b", "not a valid topic filter"),
            ("\"\" out 1 l/x \"\"", "needs both prefixes"),
            ("# out 1 l r", "not a filter"),
            ("$share/g/a out", "shared"),
            ("a out 1 l/ r/ extra", "too many fields"),
        ] {
            let e = TopicMap::parse(l).expect_err(l);
            assert!(e.contains(why), "{l}: {e}");
        }
    }

    #[test]
    fn first_matching_line_routes() {
        let maps = vec![line("a/# out 1 l/ r/"), line("# both 0")];
        let (m, t) = route_out(&maps, "l/a/1").unwrap();
        assert_eq!((m.qos, t.as_str()), (QoS::AtLeastOnce, "r/a/1"));
        let (m, t) = route_out(&maps, "z").unwrap();
        assert_eq!((m.qos, t.as_str()), (QoS::AtMostOnce, "z"));
        let (_, t) = route_in(&maps, "r/a/1").unwrap();
        assert_eq!(t, "r/a/1", "the out-only line does not map in");
    }
}
