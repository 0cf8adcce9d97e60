//! The summary of a run: counts, rates, latency percentiles; as text or JSON.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Latency {
    pub(crate) count: u64,
    pub(crate) mean: f64,
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
    pub(crate) max: f64,
}

impl Latency {
    /// From a histogram in nanoseconds; `None` when empty.
    pub(crate) fn from_ns(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        let ms = |ns: u64| round3(ns as f64 / 1e6);
        Some(Self {
            count: h.len(),
            mean: round3(h.mean() / 1e6),
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        })
    }

    fn line(&self) -> String {
        format!(
            "p50 {} ms  p90 {} ms  p99 {} ms  p99.9 {} ms  max {} ms  (mean {} ms, {} samples)",
            self.p50, self.p90, self.p99, self.p999, self.max, self.mean, self.count
        )
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Connection-test figures.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ConnectStats {
    pub(crate) attempted: u64,
    pub(crate) established: u64,
    pub(crate) failed: u64,
    /// From the first connect to the last CONNACK.
    pub(crate) seconds: f64,
    pub(crate) per_sec: f64,
    /// TCP connect started to CONNACK received (TLS and WebSocket handshakes included).
    pub(crate) latency_ms: Option<Latency>,
    /// Connections still up at the end of the hold.
    pub(crate) held: u64,
    /// The first failure, if any.
    pub(crate) first_error: Option<String>,
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Summary {
    pub(crate) scenario: String,
    pub(crate) broker: String,
    /// `tcp`, `tls`, `ws` or `wss`.
    pub(crate) transport: String,
    pub(crate) protocol: String,
    pub(crate) qos: u8,
    pub(crate) size: usize,
    pub(crate) publishers: usize,
    pub(crate) subscribers: usize,
    /// Deliveries expected per message published.
    pub(crate) fanout: u32,
    pub(crate) window: u32,
    /// Offered rate (`--rate`); `None`: unlimited.
    pub(crate) rate: Option<f64>,
    pub(crate) duration_s: f64,
    /// Messages published during the run.
    pub(crate) sent: u64,
    /// Messages received by subscribers, drain included.
    pub(crate) received: u64,
    /// Deliveries expected: sent × fanout.
    pub(crate) expected: u64,
    /// Expected deliveries that did not arrive by the end of the drain.
    pub(crate) lost: u64,
    /// Of the lost, those seen as gaps in a publisher's sequence numbers (dropped mid-stream).
    pub(crate) gaps: u64,
    /// Messages that arrived after a later one of the same publisher.
    pub(crate) reordered: u64,
    /// PUBACK/PUBCOMP received by publishers (QoS > 0).
    pub(crate) acked: u64,
    /// Acks with a failure reason code.
    pub(crate) nacked: u64,
    /// Messages published per second during the run.
    pub(crate) sent_per_sec: f64,
    /// Messages delivered per second during the run (the throughput).
    pub(crate) received_per_sec: f64,
    /// Connections broken during the run.
    pub(crate) errors: u64,
    pub(crate) latency_ms: Option<Latency>,
    pub(crate) connect: Option<ConnectStats>,
}

impl Summary {
    pub(crate) fn text(&self) -> String {
        let mut s = String::new();
        if let Some(c) = &self.connect {
            let rate = self
                .rate
                .map_or_else(|| "as fast as possible".to_owned(), |r| format!("at {r}/s"));
            let _ = writeln!(
                s,
                "conn against {} over {}: MQTT {}, {} connections {rate}, held {:.1} s",
                self.broker, self.transport, self.protocol, c.attempted, self.duration_s
            );
        }
        let rate = self
            .rate
            .map_or_else(|| "unlimited".to_owned(), |r| format!("{r} msg/s"));
        if self.connect.is_none() {
            let _ = writeln!(
                s,
                "{} against {} over {}: MQTT {}, QoS {}, {}-byte payloads, {} publisher(s), {} subscriber(s), window {}, rate {}, {:.1} s",
                self.scenario,
                self.broker,
                self.transport,
                self.protocol,
                self.qos,
                self.size,
                self.publishers,
                self.subscribers,
                self.window,
                rate,
                self.duration_s
            );
        }
        if let Some(c) = &self.connect {
            let _ = writeln!(
                s,
                "connections  {} of {} established in {:.2} s ({:.0} handshakes/s: {}), {} failed, {} held at the end",
                c.established,
                c.attempted,
                c.seconds,
                c.per_sec,
                handshakes(&self.transport),
                c.failed,
                c.held
            );
            if let Some(l) = &c.latency_ms {
                let _ = writeln!(s, "connect time {}", l.line());
            }
            if let Some(e) = &c.first_error {
                let _ = writeln!(s, "first error  {e}");
            }
            return s;
        }
        let _ = writeln!(
            s,
            "sent         {} ({:.0} msg/s)",
            self.sent, self.sent_per_sec
        );
        let _ = writeln!(
            s,
            "received     {} ({:.0} msg/s)",
            self.received, self.received_per_sec
        );
        let _ = writeln!(
            s,
            "lost         {} of {} expected deliveries ({} seen as sequence gaps){}",
            self.lost,
            self.expected,
            self.gaps,
            if self.reordered > 0 {
                format!(", {} out of order", self.reordered)
            } else {
                String::new()
            }
        );
        if self.qos > 0 {
            let _ = writeln!(s, "acked        {} ({} refused)", self.acked, self.nacked);
        }
        if self.errors > 0 {
            let _ = writeln!(s, "errors       {} connection(s) broken", self.errors);
        }
        match &self.latency_ms {
            Some(l) => {
                let _ = writeln!(s, "latency      {}", l.line());
            }
            None => {
                let _ = writeln!(s, "latency      (no samples)");
            }
        }
        s
    }
}

/// What one connection's handshake is made of, per transport.
fn handshakes(transport: &str) -> &'static str {
    match transport {
        "tls" => "TCP + TLS + MQTT CONNECT",
        "ws" => "TCP + WebSocket upgrade + MQTT CONNECT",
        "wss" => "TCP + TLS + WebSocket upgrade + MQTT CONNECT",
        _ => "TCP + MQTT CONNECT",
    }
}

/// `12345.6` as `12.3k`, for the progress line.
pub(crate) fn si(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_in_ms() {
        let mut h = super::super::engine::new_histogram();
        for i in 1..=1000u64 {
            h.record(i * 1_000_000).expect("in range");
        }
        let l = Latency::from_ns(&h).expect("samples");
        assert_eq!(l.count, 1000);
        assert!((l.p50 - 500.0).abs() < 1.0, "{l:?}");
        assert!((l.p99 - 990.0).abs() < 1.0, "{l:?}");
        assert!((l.max - 1000.0).abs() < 1.0, "{l:?}");
        assert_eq!(si(1234.0), "1234");
        assert_eq!(si(123_456.0), "123.5k");
    }
}
