//! The broker API for other crates (`hermod_broker::api::BrokerHandle`): the event stream,
//! queries and commands, against a running broker with real MQTT clients.

use bytes::Bytes;
use hermod_broker::api::{BrokerHandle, CommandError, Event};
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
    assert!(matches!(
        next(&mut rx).await,
        Event::MessageDelivered { ref client_id, ref topic, qos: QoS::AtLeastOnce }
            if &**client_id == "ev" && &**topic == "ev/1"
    ));
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

#[tokio::test]
async fn client_details_and_subscriptions_online_and_offline() {
    let (addr, api, _stop) = start().await;
    let (mut off, _) = Client::connect_with(addr, persistent(V311, "d-offline")).await;
    off.subscribe("off/#", Q1).await;
    off.disconnect().await;
    let mut on = Client::connect_id(addr, V5, "d-online").await;
    on.subscribe("b/+", Q1).await;
    on.subscribe("$share/g/a/#", Q0).await;
    on.ping().await;

    let c = api.client("d-online").expect("known");
    let conn = c.connection.expect("connected");
    assert_eq!(conn.protocol, hermod_proto::ProtocolVersion::V5);
    assert!(conn.peer.ip().is_loopback() && conn.clean_start);
    assert_eq!(
        (c.online, c.subscriptions, c.queued, c.inflight),
        (true, 2, 0, 0)
    );
    let c = api.client("d-offline").expect("known");
    assert!(!c.online && c.connection.is_none());
    assert_eq!(c.subscriptions, 1);
    assert!(api.client("nobody").is_none());

    let subs = api.client_subscriptions("d-online").await.expect("online");
    let filters: Vec<(&str, &str, Option<&str>)> = subs
        .iter()
        .map(|s| {
            (
                s.filter.as_str(),
                s.topic.as_str(),
                s.share_group.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        filters,
        [("$share/g/a/#", "a/#", Some("g")), ("b/+", "b/+", None)]
    );
    let subs = api
        .client_subscriptions("d-offline")
        .await
        .expect("offline");
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].options.qos, QoS::AtLeastOnce);
    assert!(api.client_subscriptions("nobody").await.is_none());

    // The whole table: both sessions, shared groups split out.
    let all: Vec<(String, String, Option<String>)> = api
        .subscriptions()
        .into_iter()
        .map(|s| (s.client_id.to_string(), s.filter, s.share_group))
        .collect();
    assert_eq!(
        all,
        [
            ("d-offline".into(), "off/#".into(), None),
            ("d-online".into(), "$share/g/a/#".into(), Some("g".into())),
            ("d-online".into(), "b/+".into(), None),
        ]
    );
}

#[tokio::test]
async fn subscribe_on_behalf_of_a_connected_client() {
    let (addr, api, _stop) = start().await;
    let mut pubr = Client::connect_id(addr, V5, "obo-pub").await;
    pubr.publish("obo/state", b"retained", Q1, true).await;
    let mut c = Client::connect_id(addr, V311, "obo").await;
    let opts = |qos| hermod_proto::SubscriptionOptions {
        qos,
        ..Default::default()
    };

    // Granted like a SUBSCRIBE: retained messages arrive, then live ones; no SUBACK is sent.
    assert_eq!(
        api.subscribe("obo", "obo/#", opts(QoS::AtLeastOnce)).await,
        Ok(QoS::AtLeastOnce)
    );
    let p = c.expect_publish_acked().await;
    assert_eq!((p.topic.as_str(), p.retain), ("obo/state", true));
    pubr.publish("obo/live", b"x", Q1, false).await;
    assert_eq!(c.expect_publish_acked().await.topic, "obo/live");
    assert_eq!(api.client("obo").expect("known").subscriptions, 1);

    // An invalid filter is refused before it reaches the client, which stays connected (a
    // 3.1.1 client would be disconnected for it had it sent that SUBSCRIBE itself).
    assert!(matches!(
        api.subscribe("obo", "a/#/b", opts(QoS::AtMostOnce)).await,
        Err(CommandError::InvalidFilter(_))
    ));
    let shared_no_local = hermod_proto::SubscriptionOptions {
        no_local: true,
        ..opts(QoS::AtMostOnce)
    };
    assert!(matches!(
        api.subscribe("obo", "$share/g/x", shared_no_local).await,
        Err(CommandError::InvalidFilter(_))
    ));
    c.ping().await;

    // Unsubscribe: nothing more is delivered.
    assert_eq!(api.unsubscribe("obo", "obo/#").await, Ok(true));
    assert_eq!(api.unsubscribe("obo", "obo/#").await, Ok(false));
    pubr.publish("obo/live", b"y", Q1, false).await;
    c.expect_nothing(QUIET).await;

    // Commands act on connected clients only.
    assert_eq!(
        api.subscribe("nobody", "x", opts(QoS::AtMostOnce)).await,
        Err(CommandError::NotConnected)
    );
    assert_eq!(
        api.unsubscribe("nobody", "x").await,
        Err(CommandError::NotConnected)
    );
}
