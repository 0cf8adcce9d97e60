//! Unit tests of the metrics: shards, flushing, snapshots, histograms.
use super::*;

#[test]
fn shards_sum_across_threads() {
    let m = Arc::new(Metrics::new(vec!["a".into()], Arc::default()));
    let threads: Vec<_> = (0..20)
        .map(|_| {
            let m = m.clone();
            std::thread::spawn(move || {
                let mut local = Local::default();
                for _ in 0..1000 {
                    local.publish_received(QoS::AtLeastOnce, 10);
                    m.publish_received(QoS::AtMostOnce, 1);
                }
                m.flush(&mut local);
                m.connect(0, ConnectResult::BadCredentials);
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    let s = m.snapshot();
    assert_eq!(s.messages_received_by_qos, [20_000, 20_000, 0]);
    assert_eq!(s.publish_bytes_received, 20 * 1000 * 11);
    assert_eq!(s.connects_for(ConnectResult::BadCredentials), 20);
    assert_eq!(s.connects[0].listener, "a");
}

#[test]
fn histogram_buckets_are_cumulative() {
    let m = Metrics::default();
    let mut local = Local::default();
    local.latency(Duration::from_micros(40));
    local.latency(Duration::from_millis(3));
    local.latency(Duration::from_secs(60));
    m.flush(&mut local);
    m.store_commit(Duration::from_millis(1));
    let s = m.snapshot();
    assert_eq!(s.latency.count, 3);
    assert_eq!(s.latency.buckets[0], (0.000_05, 1));
    assert_eq!(s.latency.buckets[6], (0.005, 2));
    assert_eq!(s.latency.buckets.last().map(|b| b.1), Some(2));
    assert!((s.latency.sum_seconds - 60.003_04).abs() < 1e-6);
    assert_eq!(s.store_commit.count, 1);
    assert_eq!(s.store_commit.buckets[4].1, 1);
    assert_eq!(s.store_commit.buckets[3].1, 0);
}
