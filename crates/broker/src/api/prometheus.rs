//! The Prometheus exposition of [`super::BrokerHandle::prometheus_text`]: a
//! `prometheus_client` collector that encodes one snapshot ([`Stats`] + [`MetricsSnapshot`])
//! taken at scrape time. Nothing is registered or updated between scrapes, so the hot path
//! knows nothing of Prometheus. No per-client or per-topic label: label values are listener
//! names and fixed enumerations only.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::{DropReason, Stats};
use crate::metrics::{
    ConnectResult, DisconnectReason, HistogramSnapshot, MetricsSnapshot, PACKET_TYPES,
};

/// One scrape's values.
#[derive(Debug)]
struct Scrape {
    stats: Stats,
    m: MetricsSnapshot,
    /// The store's writer counters (no store: none of its series).
    store: Option<crate::store::StoreStats>,
}

fn gauge(enc: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
    g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(enc: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
}

/// A counter family with one label.
fn counters<'a>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &str,
    values: impl IntoIterator<Item = (&'a str, u64)>,
) -> std::fmt::Result {
    let mut family = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, v) in values {
        let labels = [(label, value)];
        ConstCounter::new(v).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn histogram(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    h: &HistogramSnapshot,
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    // `encode_histogram` takes per-bucket counts and accumulates them itself.
    let mut previous = 0;
    let mut buckets: Vec<(f64, u64)> = h
        .buckets
        .iter()
        .map(|&(le, cumulative)| {
            let n = cumulative - previous;
            previous = cumulative;
            (le, n)
        })
        .collect();
    buckets.push((f64::INFINITY, h.count - previous));
    m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
        h.sum_seconds,
        h.count,
        &buckets,
        None,
    )
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> std::fmt::Result {
        let (st, m) = (&self.stats, &self.m);
        {
            let mut info = enc.encode_descriptor(
                "build_info",
                "Hermod build: its version as a label, value 1.",
                None,
                MetricType::Gauge,
            )?;
            let labels = [("version", env!("CARGO_PKG_VERSION"))];
            ConstGauge::new(1i64).encode(info.encode_family(&labels)?)?;
        }
        let e = &mut enc;
        gauge(
            e,
            "connections",
            "Open network connections.",
            st.connections,
        )?;
        gauge(
            e,
            "clients_connected",
            "Connected clients (after CONNACK).",
            m.clients_connected,
        )?;
        gauge(
            e,
            "sessions",
            "Sessions, online and offline.",
            st.sessions as u64,
        )?;
        gauge(
            e,
            "subscriptions",
            "Subscriptions (shared ones included).",
            st.subscriptions as u64,
        )?;
        gauge(
            e,
            "shared_subscriptions",
            "Shared subscriptions (members of $share groups).",
            st.shared_subscriptions as u64,
        )?;
        gauge(
            e,
            "topics",
            "Distinct topic filters subscribed to.",
            st.topics as u64,
        )?;
        gauge(
            e,
            "retained_messages",
            "Retained messages.",
            st.retained as u64,
        )?;
        gauge(
            e,
            "inflight",
            "Outbound QoS 1/2 messages sent and not yet acknowledged.",
            st.inflight as u64,
        )?;
        gauge(
            e,
            "queued",
            "Messages queued for sessions (in memory, or paged in).",
            st.queued as u64,
        )?;
        gauge(
            e,
            "store_bytes",
            "Bytes of queued messages in the durable store.",
            st.store_bytes,
        )?;
        gauge(
            e,
            "store_healthy",
            "1 while the store can write (0 when down or absent).",
            u64::from(st.store_available),
        )?;

        let listeners = m.connects.iter().flat_map(|l| {
            ConnectResult::ALL
                .iter()
                .zip(l.results)
                .map(move |(r, v)| (l.listener.as_str(), r.as_str(), v))
        });
        {
            let mut family = e.encode_descriptor(
                "connects",
                "CONNECTs answered, by listener and result.",
                None,
                MetricType::Counter,
            )?;
            for (listener, result, v) in listeners {
                let labels = [("listener", listener), ("result", result)];
                ConstCounter::new(v).encode(family.encode_family(&labels)?)?;
            }
        }
        counters(
            e,
            "disconnects",
            "Connections of connected clients that ended, by reason.",
            "reason",
            DisconnectReason::ALL
                .iter()
                .map(|r| (r.as_str(), m.disconnects_for(*r))),
        )?;
        counter(
            e,
            "connections_refused",
            "Connections refused at accept (max_connections).",
            m.connections_refused,
        )?;
        counter(
            e,
            "protocol_errors",
            "Connections closed for a protocol error.",
            m.protocol_errors,
        )?;
        counter(
            e,
            "sessions_expired",
            "Offline sessions that expired.",
            m.clients_expired,
        )?;
        let types = || (1..16).map(|t| PACKET_TYPES[t]);
        counters(
            e,
            "packets_received",
            "MQTT packets received, by type.",
            "type",
            types().zip(m.packets_received[1..].iter().copied()),
        )?;
        counters(
            e,
            "packets_sent",
            "MQTT packets sent, by type.",
            "type",
            types().zip(m.packets_sent[1..].iter().copied()),
        )?;
        counter(
            e,
            "bytes_received",
            "MQTT bytes read from clients.",
            m.bytes_received,
        )?;
        counter(
            e,
            "bytes_sent",
            "MQTT bytes written to clients.",
            m.bytes_sent,
        )?;
        counter(
            e,
            "publish_bytes_received",
            "Payload bytes of the PUBLISH messages received.",
            m.publish_bytes_received,
        )?;
        counter(
            e,
            "publish_bytes_sent",
            "Payload bytes of the PUBLISH messages sent.",
            m.publish_bytes_sent,
        )?;
        let qos = ["0", "1", "2"];
        counters(
            e,
            "messages_received",
            "PUBLISH messages received, by QoS.",
            "qos",
            qos.into_iter().zip(m.messages_received_by_qos),
        )?;
        counters(
            e,
            "messages_sent",
            "PUBLISH messages sent, by QoS.",
            "qos",
            qos.into_iter().zip(m.messages_sent_by_qos),
        )?;
        counters(
            e,
            "messages_dropped",
            "Messages dropped, by reason (no_subscribers: messages; the others: deliveries).",
            "reason",
            DropReason::ALL
                .iter()
                .map(|r| (r.as_str(), m.dropped_for(*r))),
        )?;
        counters(
            e,
            "auth",
            "Authentications, by result.",
            "result",
            [("success", m.auth_success), ("failure", m.auth_failure)],
        )?;
        {
            let mut family = e.encode_descriptor(
                "acl",
                "ACL checks, by action and result.",
                None,
                MetricType::Counter,
            )?;
            for (action, result, v) in [
                ("publish", "allowed", m.acl_publish_allowed),
                ("publish", "denied", m.acl_publish_denied),
                ("subscribe", "allowed", m.acl_subscribe_allowed),
                ("subscribe", "denied", m.acl_subscribe_denied),
                ("receive", "allowed", m.acl_receive_allowed),
                ("receive", "denied", m.acl_receive_denied),
            ] {
                let labels = [("action", action), ("result", result)];
                ConstCounter::new(v).encode(family.encode_family(&labels)?)?;
            }
        }
        histogram(
            e,
            "publish_deliver_latency_seconds",
            "From the read that brought a PUBLISH to the write of each copy sent.",
            &m.latency,
        )?;
        histogram(
            e,
            "store_commit_seconds",
            "Store commit time (one write transaction, fsync included).",
            &m.store_commit,
        )?;
        if let Some(s) = &self.store {
            counter(
                e,
                "store_commits",
                "Store write transactions committed.",
                s.commits,
            )?;
            counter(
                e,
                "store_ops",
                "Store ops applied in committed transactions.",
                s.ops,
            )?;
        }
        Ok(())
    }
}

/// The text exposition, in the Prometheus text format 0.0.4 (see [`classic_text`]).
pub(super) fn encode(
    stats: Stats,
    m: MetricsSnapshot,
    store: Option<crate::store::StoreStats>,
) -> String {
    let mut registry = Registry::with_prefix("hermod");
    registry.register_collector(Box::new(Scrape { stats, m, store }));
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    classic_text(&out)
}

/// `prometheus_client` writes OpenMetrics text, where a counter family `x` has samples
/// `x_total`; the classic Prometheus text format (0.0.4, what `promtool check metrics` and
/// every scraper read) names the family after its samples. So the `# HELP`/`# TYPE` lines of
/// counters get the `_total` suffix, and the OpenMetrics-only `# EOF` and `# UNIT` lines go.
fn classic_text(openmetrics: &str) -> String {
    let lines: Vec<&str> = openmetrics.lines().collect();
    let mut out = String::with_capacity(openmetrics.len() + 256);
    for (i, line) in lines.iter().enumerate() {
        if *line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let counter_name = |l: &str| {
            l.strip_prefix("# TYPE ")
                .and_then(|r| r.strip_suffix(" counter"))
                .filter(|n| !n.ends_with("_total"))
                .map(str::to_owned)
        };
        if let Some(name) = counter_name(line) {
            out.push_str(&format!("# TYPE {name}_total counter\n"));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ")
            && let Some(name) = lines.get(i + 1).and_then(|l| counter_name(l))
            && let Some(help) = rest.strip_prefix(name.as_str())
        {
            out.push_str(&format!("# HELP {name}_total{help}\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}
