//! Interoperability with an independent client implementation: rumqttc (3.1.1 and 5.0).

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::harness::*;

mod v311 {
    use super::*;
    use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet as P, QoS as RQ};

    pub(super) struct Peer {
        pub client: AsyncClient,
        pub events: mpsc::UnboundedReceiver<P>,
        pub task: JoinHandle<()>,
    }

    pub(super) async fn peer(b: &TestBroker, id: &str, will: Option<LastWill>) -> Peer {
        let mut o = MqttOptions::new(id, b.addr.ip().to_string(), b.addr.port());
        o.set_keep_alive(Duration::from_secs(5));
        if let Some(w) = will {
            o.set_last_will(w);
        }
        let (client, mut el) = AsyncClient::new(o, 100);
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok(ev) = el.poll().await {
                if let Event::Incoming(p) = ev
                    && tx.send(p).is_err()
                {
                    break;
                }
            }
        });
        let mut p = Peer {
            client,
            events: rx,
            task,
        };
        match p.next().await {
            P::ConnAck(a) => assert_eq!(a.code, rumqttc::ConnectReturnCode::Success),
            other => panic!("expected CONNACK, got {other:?}"),
        }
        p
    }

    impl Peer {
        pub(super) async fn next(&mut self) -> P {
            tokio::time::timeout(WAIT, self.events.recv())
                .await
                .expect("rumqttc event in time")
                .expect("event loop alive")
        }
        pub(super) async fn next_publish(&mut self) -> rumqttc::Publish {
            loop {
                if let P::Publish(p) = self.next().await {
                    return p;
                }
            }
        }
        pub(super) async fn subscribed(&mut self, filter: &str, qos: RQ) {
            self.client.subscribe(filter, qos).await.expect("subscribe");
            loop {
                if let P::SubAck(a) = self.next().await {
                    assert_eq!(a.return_codes.len(), 1);
                    return;
                }
            }
        }
    }

    // QoS 0/1/2 publish and subscribe between two rumqttc 3.1.1 clients through the broker.
    #[tokio::test]
    async fn pub_sub_all_qos() {
        let b = TestBroker::start().await;
        let mut sub = peer(&b, "rs", None).await;
        sub.subscribed("i4/#", RQ::ExactlyOnce).await;
        let publ = peer(&b, "rp", None).await;
        for q in [RQ::AtMostOnce, RQ::AtLeastOnce, RQ::ExactlyOnce] {
            publ.client
                .publish("i4/t", q, false, format!("q{}", q as u8))
                .await
                .expect("publish");
        }
        let mut got = Vec::new();
        for _ in 0..3 {
            let p = sub.next_publish().await;
            got.push((String::from_utf8_lossy(&p.payload).into_owned(), p.qos));
        }
        assert_eq!(
            got,
            [
                ("q0".into(), RQ::AtMostOnce),
                ("q1".into(), RQ::AtLeastOnce),
                ("q2".into(), RQ::ExactlyOnce)
            ]
        );
        b.stop().await;
    }

    // Retained message reaches a later rumqttc subscriber with the retain flag set [MQTT-3.3.1-8].
    #[tokio::test]
    async fn retained() {
        let b = TestBroker::start().await;
        let publ = peer(&b, "rp", None).await;
        publ.client
            .publish("i4/ret", RQ::AtLeastOnce, true, "kept")
            .await
            .expect("publish");
        let mut raw = b.client(V311, "sync").await;
        raw.subscribe("i4/ret", Q1).await;
        assert_eq!(raw.expect_publish_acked().await.payload.as_ref(), b"kept");
        let mut sub = peer(&b, "rs", None).await;
        sub.client
            .subscribe("i4/ret", RQ::AtLeastOnce)
            .await
            .expect("subscribe");
        let p = sub.next_publish().await;
        assert!(p.retain);
        assert_eq!(p.payload.as_ref(), b"kept");
        b.stop().await;
    }

    // A rumqttc client whose connection is dropped has its last will published [MQTT-3.1.2-8].
    #[tokio::test]
    async fn last_will() {
        let b = TestBroker::start().await;
        let mut obs = peer(&b, "obs", None).await;
        obs.subscribed("i4/will", RQ::AtLeastOnce).await;
        let dying = peer(
            &b,
            "dying",
            Some(LastWill::new("i4/will", "gone", RQ::AtLeastOnce, false)),
        )
        .await;
        dying.task.abort();
        let p = obs.next_publish().await;
        assert_eq!(p.payload.as_ref(), b"gone");
        assert_eq!(p.qos, RQ::AtLeastOnce);
        b.stop().await;
    }
}

mod v5 {
    use super::*;
    use rumqttc::v5::mqttbytes::QoS as RQ;
    use rumqttc::v5::mqttbytes::v5::{LastWill, Packet as P, Publish};
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};

    pub(super) struct Peer {
        pub client: AsyncClient,
        pub events: mpsc::UnboundedReceiver<P>,
        pub task: JoinHandle<()>,
    }

    pub(super) async fn peer(b: &TestBroker, id: &str, will: Option<LastWill>) -> Peer {
        let mut o = MqttOptions::new(id, b.addr.ip().to_string(), b.addr.port());
        o.set_keep_alive(Duration::from_secs(5));
        if let Some(w) = will {
            o.set_last_will(w);
        }
        let (client, mut el) = AsyncClient::new(o, 100);
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok(ev) = el.poll().await {
                if let Event::Incoming(p) = ev
                    && tx.send(p).is_err()
                {
                    break;
                }
            }
        });
        let mut p = Peer {
            client,
            events: rx,
            task,
        };
        match p.next().await {
            P::ConnAck(a) => assert_eq!(
                a.code,
                rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success
            ),
            other => panic!("expected CONNACK, got {other:?}"),
        }
        p
    }

    impl Peer {
        pub(super) async fn next(&mut self) -> P {
            tokio::time::timeout(WAIT, self.events.recv())
                .await
                .expect("rumqttc event in time")
                .expect("event loop alive")
        }
        pub(super) async fn next_publish(&mut self) -> Publish {
            loop {
                if let P::Publish(p) = self.next().await {
                    return p;
                }
            }
        }
        pub(super) async fn subscribed(&mut self, filter: &str, qos: RQ) {
            self.client.subscribe(filter, qos).await.expect("subscribe");
            loop {
                if let P::SubAck(a) = self.next().await {
                    assert_eq!(a.return_codes.len(), 1);
                    return;
                }
            }
        }
    }

    // QoS 0/1/2 publish and subscribe between two rumqttc 5.0 clients through the broker.
    #[tokio::test]
    async fn pub_sub_all_qos() {
        let b = TestBroker::start().await;
        let mut sub = peer(&b, "rs", None).await;
        sub.subscribed("i5/#", RQ::ExactlyOnce).await;
        let publ = peer(&b, "rp", None).await;
        for q in [RQ::AtMostOnce, RQ::AtLeastOnce, RQ::ExactlyOnce] {
            publ.client
                .publish("i5/t", q, false, format!("q{}", q as u8))
                .await
                .expect("publish");
        }
        let mut got = Vec::new();
        for _ in 0..3 {
            let p = sub.next_publish().await;
            got.push((
                String::from_utf8_lossy(&p.payload).into_owned(),
                p.qos,
                p.topic.clone(),
            ));
        }
        assert_eq!(
            got,
            [
                (
                    "q0".into(),
                    RQ::AtMostOnce,
                    bytes::Bytes::from_static(b"i5/t")
                ),
                (
                    "q1".into(),
                    RQ::AtLeastOnce,
                    bytes::Bytes::from_static(b"i5/t")
                ),
                (
                    "q2".into(),
                    RQ::ExactlyOnce,
                    bytes::Bytes::from_static(b"i5/t")
                )
            ]
        );
        b.stop().await;
    }

    // Retained message reaches a later rumqttc 5.0 subscriber with the retain flag set.
    #[tokio::test]
    async fn retained() {
        let b = TestBroker::start().await;
        let publ = peer(&b, "rp", None).await;
        publ.client
            .publish("i5/ret", RQ::AtLeastOnce, true, "kept")
            .await
            .expect("publish");
        let mut raw = b.client(V5, "sync").await;
        raw.subscribe("i5/ret", Q1).await;
        assert_eq!(raw.expect_publish_acked().await.payload.as_ref(), b"kept");
        let mut sub = peer(&b, "rs", None).await;
        sub.client
            .subscribe("i5/ret", RQ::AtLeastOnce)
            .await
            .expect("subscribe");
        let p = sub.next_publish().await;
        assert!(p.retain);
        assert_eq!(p.payload.as_ref(), b"kept");
        b.stop().await;
    }

    // A rumqttc 5.0 client whose connection is dropped has its last will published.
    #[tokio::test]
    async fn last_will() {
        let b = TestBroker::start().await;
        let mut obs = peer(&b, "obs", None).await;
        obs.subscribed("i5/will", RQ::AtLeastOnce).await;
        let dying = peer(
            &b,
            "dying",
            Some(LastWill::new(
                "i5/will",
                "gone",
                RQ::AtLeastOnce,
                false,
                None,
            )),
        )
        .await;
        dying.task.abort();
        let p = obs.next_publish().await;
        assert_eq!(p.payload.as_ref(), b"gone");
        assert_eq!(p.qos, RQ::AtLeastOnce);
        b.stop().await;
    }
}
