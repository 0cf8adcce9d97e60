//! The broker API for other crates (`hermod_broker::api::BrokerHandle`): the event stream,
//! queries and commands, against a running broker with real MQTT clients.

use bytes::Bytes;
use hermod_broker::api::{BrokerHandle, Event};
use hermod_broker::banned::{BanEntry, BanRule};
use hermod_broker::{Broker, Config};
use hermod_proto::{LastWill, QoS, ReasonCode};
use tokio::sync::broadcast;

use crate::harness::*;

/// A broker on a loopback port with its API handle; stopped when the sender is dropped.
async fn start() -> (
    std::net::SocketAddr,
    BrokerHandle,
    tokio::sync::oneshot::Sender<()>,
) {
    let broker = Broker::bind(Config::for_tests()).await.expect("binds");
    let (addr, handle) = (broker.local_addr(), broker.handle());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(broker.run(async move {
        let _ = rx.await;
    }));
    (addr, handle, tx)
}

/// The next event, within the harness's wait.
async fn next(rx: &mut broadcast::Receiver<Event>) -> Event {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("an event in time")
        .expect("event stream open")
}

#[tokio::test]
async fn events_follow_a_client_through_its_life() {
    let (addr, api, _stop) = start().await;
    let mut rx = api.events();
    let (mut c, _) = Client::connect_with(addr, persistent(V5, "ev")).await;
    match next(&mut rx).await {
        Event::ClientConnected {
            client_id,
            session_present,
            clean_start,
            ..
        } => {
            assert_eq!(&*client_id, "ev");
            assert!(!session_present && !clean_start);
        }
        other => panic!("{other:?}"),
    }
    c.subscribe("ev/#", Q1).await;
    assert!(matches!(
        next(&mut rx).await,
        Event::SubscriptionAdded { ref filter, qos: QoS::AtLeastOnce, .. } if filter == "ev/#"
    ));
    c.publish("ev/1", b"x", Q1, false).await;
    match next(&mut rx).await {
        Event::MessagePublished {
            topic,
            delivered,
            publisher,
            ..
        } => {
            assert_eq!((&*topic, delivered), ("ev/1", 1));
            assert_eq!(publisher.as_deref(), Some("ev"));
        }
        other => panic!("{other:?}"),
    }
    let _ = c.expect_publish_acked().await;
    c.unsubscribe(&["ev/#"]).await;
    assert!(matches!(
        next(&mut rx).await,
        Event::SubscriptionRemoved { ref filter, .. } if filter == "ev/#"
    ));
    c.disconnect().await;
    assert!(matches!(
        next(&mut rx).await,
        Event::ClientDisconnected { ref reason, .. } if reason == "normal"
    ));
}

#[tokio::test]
async fn queries_see_clients_retained_and_stats() {
    let (addr, api, _stop) = start().await;
    let (s, _) = Client::connect_with(addr, persistent(V311, "q-offline")).await;
    s.disconnect().await;
    let mut online = Client::connect_id(addr, V5, "q-online").await;
    online.publish("r/a", b"1", Q1, true).await;
    online.publish("r/b", b"2", Q0, true).await;
    online.ping().await;
    let clients: Vec<(String, bool)> = api
        .clients()
        .into_iter()
        .map(|c| (c.client_id.to_string(), c.online))
        .collect();
    assert_eq!(
        clients,
        [
            ("q-offline".to_owned(), false),
            ("q-online".to_owned(), true)
        ]
    );
    let retained: Vec<String> = api
        .retained("r/#")
        .iter()
        .map(|r| r.topic.to_string())
        .collect();
    assert_eq!(retained, ["r/a", "r/b"]);
    let stats = api.stats();
    assert_eq!((stats.sessions, stats.retained), (2, 2));
    assert!(stats.connections >= 1 && stats.messages_received >= 2);
}

#[tokio::test]
async fn commands_kick_publish_delete_retained_and_ban() {
    let (addr, api, _stop) = start().await;
    let mut watcher = Client::connect_id(addr, V5, "watcher").await;
    watcher.subscribe("cmd/#", Q1).await;

    // publish: as the broker, to current subscribers.
    api.publish(
        "cmd/hello",
        Bytes::from_static(b"hi"),
        QoS::AtLeastOnce,
        false,
    );
    assert_eq!(watcher.expect_publish_acked().await.payload.as_ref(), b"hi");

    // delete_retained: gone for later subscribers, nothing delivered now.
    watcher.publish("cmd/state", b"on", Q1, true).await;
    let _ = watcher.expect_publish_acked().await;
    assert!(api.delete_retained("cmd/state"));
    assert!(!api.delete_retained("cmd/state"), "already gone");
    watcher.expect_nothing(QUIET).await;
    assert!(api.retained("cmd/#").is_empty());

    // kick: DISCONNECT 0x98 (v5), the will is published, the persistent session stays.
    let mut c = persistent(V5, "kicked");
    c.will = Some(LastWill {
        topic: "cmd/will".into(),
        payload: Bytes::from_static(b"gone"),
        qos: Q1,
        retain: false,
        properties: Default::default(),
    });
    let (mut k, _) = Client::connect_with(addr, c).await;
    assert!(api.kick("kicked"));
    k.expect_disconnect(ReasonCode::ADMINISTRATIVE_ACTION).await;
    assert_eq!(
        watcher.expect_publish_acked().await.payload.as_ref(),
        b"gone"
    );
    let state: Vec<(String, bool)> = api
        .clients()
        .into_iter()
        .filter(|c| &*c.client_id == "kicked")
        .map(|c| (c.client_id.to_string(), c.online))
        .collect();
    assert_eq!(
        state,
        [("kicked".to_owned(), false)],
        "session kept, offline"
    );
    assert!(!api.kick("nobody"));

    // ban / unban.
    let rule = BanRule::ClientId("evil".into());
    api.ban(BanEntry {
        rule: rule.clone(),
        until: None,
    });
    assert_eq!(api.bans().len(), 1);
    let (_, ack) = Client::connect_with(addr, connect_packet(V5, "evil")).await;
    assert_eq!(ack.reason, ReasonCode::BANNED);
    assert!(api.unban(&rule));
    let (_, ack) = Client::connect_with(addr, connect_packet(V5, "evil")).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
}
