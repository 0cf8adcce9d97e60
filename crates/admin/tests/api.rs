//! The admin API's endpoints against a real broker and real MQTT clients (hermod-testkit):
//! clients and paging, kick, bans, publish, subscribe on behalf, retained messages, stats,
//! monitor, and the 400 answers to bad input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Env, enc};
use hermod_testkit::{
    Client, Packet, Q0, Q1, ReasonCode, V5, V311, Via, connect_auth, connect_packet, publish,
};
use serde_json::json;

fn ids(v: &serde_json::Value) -> Vec<String> {
    v["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|c| c["clientid"].as_str().expect("clientid").to_owned())
        .collect()
}

#[tokio::test]
async fn clients_list_pages_and_filters() {
    let env = Env::start().await;
    let mut clients = Vec::new();
    for i in 0..5 {
        let v = if i % 2 == 0 { V5 } else { V311 };
        let c = connect_auth(
            v,
            &format!("c{i}"),
            Some(if i < 2 { "alice" } else { "bob" }),
            None,
        );
        clients.push(Client::connect(env.mqtt, &Via::Tcp, c).await);
    }
    let r = env.get("/api/v5/clients?limit=2&page=2").await;
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(
        j["meta"],
        json!({"count": 5, "limit": 2, "page": 2, "hasnext": true})
    );
    assert_eq!(ids(&j), vec!["c2", "c3"]);
    let last = env.get("/api/v5/clients?limit=2&page=3").await.json();
    assert_eq!(last["meta"]["hasnext"], false);
    assert_eq!(ids(&last), vec!["c4"]);
    let capped = env.get("/api/v5/clients?limit=1000000").await.json();
    assert_eq!(capped["meta"]["limit"], 10_000);

    // Exact look-ups (repeatable), and the other filters.
    let j = env
        .get("/api/v5/clients?clientid=c3&clientid=c1&clientid=nope")
        .await
        .json();
    assert_eq!(ids(&j), vec!["c1", "c3"]);
    assert_eq!(j["meta"]["count"], 2);
    let j = env.get("/api/v5/clients?username=alice").await.json();
    assert_eq!(ids(&j), vec!["c0", "c1"]);
    let j = env.get("/api/v5/clients?proto_ver=5").await.json();
    assert_eq!(ids(&j), vec!["c0", "c2", "c4"]);
    let j = env.get("/api/v5/clients?like_clientid=4").await.json();
    assert_eq!(ids(&j), vec!["c4"]);
    let j = env
        .get("/api/v5/clients?conn_state=disconnected")
        .await
        .json();
    assert_eq!(j["meta"]["count"], 0);
    let j = env.get("/api/v5/clients?ip_address=127.0.0.1").await.json();
    assert_eq!(j["meta"]["count"], 5);
    assert_eq!(env.get("/api/v5/clients?proto_ver=9").await.status, 400);
    assert_eq!(env.get("/api/v5/clients?page=0").await.status, 400);

    // One client: the contract's object.
    let c = env.get("/api/v5/clients/c0").await.json();
    for key in [
        "clientid",
        "username",
        "ip_address",
        "port",
        "connected",
        "proto_name",
        "proto_ver",
        "keepalive",
        "clean_start",
        "expiry_interval",
        "connected_at",
        "subscriptions_cnt",
        "mqueue_len",
        "inflight_cnt",
        "node",
        "is_bridge",
    ] {
        assert!(c.get(key).is_some(), "client object lacks {key}: {c}");
    }
    assert_eq!(c["username"], "alice");
    assert_eq!(c["proto_ver"], 5);
    assert_eq!(c["connected"], true);
    assert_eq!(c["is_bridge"], false);
    let r = env.get("/api/v5/clients/nope").await;
    assert_eq!((r.status, r.code().as_str()), (404, "CLIENTID_NOT_FOUND"));
    drop(clients);
    env.stop().await;
}

#[tokio::test]
async fn kick_disconnects_a_v5_client_with_0x98() {
    let env = Env::start().await;
    let mut c = Client::connect_id(env.mqtt, V5, "victim/1").await;
    let r = env
        .delete(&format!("/api/v5/clients/{}", enc("victim/1")))
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    // [MQTT-3.14.2-1]: the server's DISCONNECT carries a reason code; 0x98 administrative action.
    c.expect_disconnect(ReasonCode(0x98)).await;
    let r = env.delete("/api/v5/clients/victim%2F1").await;
    assert_eq!(r.status, 404);
    env.stop().await;
}

#[tokio::test]
async fn bans_refuse_connects_and_kick_matching_clients() {
    let env = Env::start().await;
    let mut c = Client::connect_id(env.mqtt, V5, "evil").await;
    let r = env
        .post(
            "/api/v5/banned",
            json!({"as": "clientid", "who": "evil", "reason": "testing", "until": "2999-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["until"], "2999-01-01T00:00:00Z");
    assert_eq!(r.json()["by"], "admin");
    c.expect_disconnect(ReasonCode(0x98)).await;
    // [MQTT-3.2.2-7] a refusing CONNACK (0x8A Banned), then the connection closes.
    let code = Client::connack(env.mqtt, &Via::Tcp, connect_packet(V5, "evil")).await;
    assert_eq!(code, ReasonCode::BANNED);
    let r = env
        .post("/api/v5/banned", json!({"as": "clientid", "who": "evil"}))
        .await;
    assert_eq!((r.status, r.code().as_str()), (409, "ALREADY_EXISTS"));
    let list = env.get("/api/v5/banned").await.json();
    assert_eq!(list["meta"]["count"], 1);
    assert_eq!(list["data"][0]["as"], "clientid");
    assert_eq!(list["data"][0]["reason"], "testing");
    assert_eq!(env.delete("/api/v5/banned/clientid/evil").await.status, 204);
    assert_eq!(env.delete("/api/v5/banned/clientid/evil").await.status, 404);
    let _ok = Client::connect_id(env.mqtt, V5, "evil").await;

    // Address bans kick every client from that address; networks go in URL-encoded.
    let mut a = Client::connect_id(env.mqtt, V311, "a").await;
    let r = env
        .post(
            "/api/v5/banned",
            json!({"as": "peerhost_net", "who": "127.0.0.0/8"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    a.expect_closed(Duration::from_secs(3)).await;
    let code = Client::connack(env.mqtt, &Via::Tcp, connect_packet(V5, "b")).await;
    assert_eq!(code, ReasonCode::BANNED);
    assert_eq!(
        env.delete(&format!(
            "/api/v5/banned/peerhost_net/{}",
            enc("127.0.0.0/8")
        ))
        .await
        .status,
        204
    );
    for (body, what) in [
        (json!({"as": "nope", "who": "x"}), "bad as"),
        (json!({"as": "peerhost", "who": "not-an-ip"}), "bad address"),
        (
            json!({"as": "clientid", "who": "x", "until": "yesterday"}),
            "bad until",
        ),
        (
            json!({"as": "clientid", "who": "x", "until": "2000-01-01T00:00:00Z"}),
            "past until",
        ),
    ] {
        assert_eq!(env.post("/api/v5/banned", body).await.status, 400, "{what}");
    }
    env.stop().await;
}

#[tokio::test]
async fn publish_reaches_a_subscriber() {
    let env = Env::start().await;
    let mut sub = Client::connect_id(env.mqtt, V5, "sub").await;
    sub.subscribe_one("t/#", Q1).await;
    let r = env
        .post(
            "/api/v5/publish",
            json!({"topic": "t/1", "payload": "hello", "qos": 1}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["id"].is_string());
    let p = sub.expect_publish().await;
    assert_eq!((&*p.topic, &p.payload[..]), ("t/1", &b"hello"[..]));
    let r = env
        .post(
            "/api/v5/publish",
            json!({"topic": "t/2", "payload": "AAEC", "payload_encoding": "base64"}),
        )
        .await;
    assert_eq!(r.status, 200);
    let p = sub.expect_publish().await;
    assert_eq!(&p.payload[..], &[0u8, 1, 2][..]);

    for (body, what) in [
        (json!({"topic": "t/#", "payload": "x"}), "wildcard topic"),
        (json!({"topic": "", "payload": "x"}), "empty topic"),
        (json!({"topic": "t", "qos": 3}), "qos 3"),
        (
            json!({"topic": "t", "payload": "!!", "payload_encoding": "base64"}),
            "bad base64",
        ),
        (
            json!({"topic": "t", "payload_encoding": "hex"}),
            "bad encoding",
        ),
        (json!({"payload": "x"}), "no topic"),
    ] {
        let r = env.post("/api/v5/publish", body).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (400, "BAD_REQUEST"),
            "{what}: {}",
            r.body
        );
    }
    let auth = format!("Bearer {}", env.token);
    let r = env
        .request("POST", "/api/v5/publish", Some(&auth), Some("{not json"))
        .await;
    assert_eq!((r.status, r.code().as_str()), (400, "BAD_REQUEST"));
    assert!(
        r.json()["message"]
            .as_str()
            .is_some_and(|m| m.contains("JSON"))
    );
    env.stop().await;
}

#[tokio::test]
async fn subscribe_on_behalf_delivers_and_lists() {
    let env = Env::start().await;
    let mut c = Client::connect_id(env.mqtt, V5, "dev1").await;
    let r = env
        .post(
            "/api/v5/clients/dev1/subscribe",
            json!({"topic": "cmd/dev1", "qos": 1}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["qos"], 1);
    assert_eq!(r.json()["topic"], "cmd/dev1");
    env.post(
        "/api/v5/publish",
        json!({"topic": "cmd/dev1", "payload": "go", "qos": 1}),
    )
    .await;
    let p = c.expect_publish_acked().await;
    assert_eq!(&p.payload[..], b"go");

    let subs = env.get("/api/v5/clients/dev1/subscriptions").await.json();
    assert_eq!(
        subs,
        json!([{"clientid": "dev1", "topic": "cmd/dev1", "qos": 1, "nl": 0, "rap": 0, "rh": 0, "node": subs[0]["node"]}])
    );
    env.post(
        "/api/v5/clients/dev1/subscribe",
        json!({"topic": "$share/g/jobs/+", "qos": 0}),
    )
    .await;
    let all = env.get("/api/v5/subscriptions").await.json();
    assert_eq!(all["meta"]["count"], 2);
    let shared = env.get("/api/v5/subscriptions?share_group=g").await.json();
    assert_eq!(shared["data"][0]["topic"], "$share/g/jobs/+");
    let m = env
        .get("/api/v5/subscriptions?match_topic=jobs/7")
        .await
        .json();
    assert_eq!(m["meta"]["count"], 1);
    let m = env
        .get("/api/v5/subscriptions?clientid=dev1&qos=1")
        .await
        .json();
    assert_eq!(m["meta"]["count"], 1);
    let topics = env.get("/api/v5/topics").await.json();
    assert_eq!(topics["meta"]["count"], 2);
    let stats = env.get("/api/v5/stats?aggregate=true").await.json();
    assert_eq!(stats["subscriptions.count"], 2);
    assert_eq!(stats["subscriptions.shared.count"], 1);
    assert_eq!(stats["topics.count"], 2);

    let r = env
        .post(
            "/api/v5/clients/dev1/unsubscribe",
            json!({"topic": "cmd/dev1"}),
        )
        .await;
    assert_eq!(r.status, 204);
    let subs = env.get("/api/v5/clients/dev1/subscriptions").await.json();
    assert_eq!(subs.as_array().map(Vec::len), Some(1));

    let r = env
        .post("/api/v5/clients/dev1/subscribe", json!({"topic": "a/#/b"}))
        .await;
    assert_eq!(r.status, 400, "invalid filter");
    let r = env
        .post("/api/v5/clients/ghost/subscribe", json!({"topic": "a"}))
        .await;
    assert_eq!((r.status, r.code().as_str()), (404, "CLIENTID_NOT_FOUND"));
    assert_eq!(
        env.get("/api/v5/clients/ghost/subscriptions").await.status,
        404
    );
    env.stop().await;
}

#[tokio::test]
async fn retained_messages_list_read_and_delete() {
    let env = Env::start().await;
    for (t, p) in [("r/a", "1"), ("r/b/c", "22"), ("other", "3")] {
        let r = env
            .post(
                "/api/v5/publish",
                json!({"topic": t, "payload": p, "retain": true}),
            )
            .await;
        assert_eq!(r.status, 200);
    }
    let mut count = 0;
    for _ in 0..50 {
        count = env.get("/api/v5/mqtt/retainer/messages").await.json()["meta"]["count"]
            .as_u64()
            .unwrap_or(0);
        if count == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(count, 3);
    let j = env
        .get("/api/v5/mqtt/retainer/messages?topic=r/%23")
        .await
        .json();
    assert_eq!(j["meta"]["count"], 2);
    let m = env
        .get(&format!("/api/v5/mqtt/retainer/message/{}", enc("r/b/c")))
        .await;
    assert_eq!(m.status, 200);
    assert_eq!(
        m.json(),
        json!({"topic": "r/b/c", "qos": 0, "payload": "MjI=", "payload_size": 2})
    );
    assert_eq!(
        env.get("/api/v5/mqtt/retainer/message/r/b/c").await.status,
        200,
        "plain slashes too"
    );
    assert_eq!(
        env.delete("/api/v5/mqtt/retainer/message/r%2Fb%2Fc")
            .await
            .status,
        204
    );
    assert_eq!(
        env.get("/api/v5/mqtt/retainer/message/r%2Fb%2Fc")
            .await
            .status,
        404
    );
    assert_eq!(
        env.delete("/api/v5/mqtt/retainer/message/r%2Fb%2Fc")
            .await
            .status,
        404
    );
    // A new subscriber no longer gets it.
    let mut s = Client::connect_id(env.mqtt, V5, "late").await;
    s.subscribe_one("r/b/c", Q0).await;
    s.expect_nothing(Duration::from_millis(300)).await;
    env.stop().await;
}

#[tokio::test]
async fn stats_metrics_and_monitor() {
    let env = Env::start().await;
    let mut c = Client::connect_id(env.mqtt, V5, "m1").await;
    let s = env.get("/api/v5/stats").await.json();
    let node = &s[0];
    for key in [
        "node",
        "connections.count",
        "live_connections.count",
        "sessions.count",
        "subscriptions.count",
        "subscriptions.shared.count",
        "topics.count",
        "retained.count",
    ] {
        assert!(node.get(key).is_some(), "stats lack {key}: {s}");
    }
    assert_eq!(node["live_connections.count"], 1);
    let m = env.get("/api/v5/metrics?aggregate=true").await.json();
    for key in [
        "node",
        "messages.received",
        "messages.sent",
        "messages.dropped",
        "messages.expired",
    ] {
        assert!(m.get(key).is_some(), "metrics lack {key}: {m}");
    }
    assert!(env.get("/api/v5/metrics").await.json().is_array());
    assert_eq!(env.get("/api/v5/stats?aggregate=maybe").await.status, 400);

    // The sampler takes its first sample at start and then ticks every second.
    let mut rate = 0.0;
    for _ in 0..40 {
        c.send(&Packet::Publish(publish("x", b"y", Q0, false)))
            .await;
        let cur = env.get("/api/v5/monitor_current").await.json();
        for key in [
            "connections",
            "live_connections",
            "sessions",
            "subscriptions",
            "topics",
            "retained_msg_count",
            "received_msg_rate",
            "sent_msg_rate",
            "dropped_msg_rate",
        ] {
            assert!(cur.get(key).is_some(), "monitor_current lacks {key}: {cur}");
        }
        rate = cur["received_msg_rate"].as_f64().unwrap_or(0.0)
            + cur["dropped_msg_rate"].as_f64().unwrap_or(0.0);
        if rate > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rate > 0.0, "rates move within seconds");
    let h = env.get("/api/v5/monitor?latest=60").await.json();
    let first = &h.as_array().expect("array")[0];
    for key in [
        "time_stamp",
        "connections",
        "sessions",
        "subscriptions",
        "topics",
        "retained",
        "received",
        "sent",
        "dropped",
    ] {
        assert!(first.get(key).is_some(), "monitor sample lacks {key}: {h}");
    }
    assert_eq!(env.get("/api/v5/monitor?latest=abc").await.status, 400);
    env.stop().await;
}

#[tokio::test]
async fn cluster_without_a_cluster_is_a_single_node() {
    let env = Env::start().await;
    let r = env.get("/api/v5/cluster").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let stats = env.get("/api/v5/stats").await.json();
    let node = stats[0]["node"].clone();
    assert!(
        node.as_str().is_some_and(|n| n.starts_with("hermod@")),
        "{stats}"
    );
    assert_eq!(
        r.json(),
        json!({"enabled": false, "node": node, "nodes": []})
    );
    // Read-only: a viewer may read it, nobody without credentials.
    let r = env
        .post(
            "/api/v5/users",
            json!({"username": "watcher", "password": "watcher pass", "role": "viewer"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let token = env.login("watcher", "watcher pass").await;
    let r = env
        .request(
            "GET",
            "/api/v5/cluster",
            Some(&format!("Bearer {token}")),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "viewer: {}", r.body);
    assert_eq!(r.json()["enabled"], false);
    let r = env.request("GET", "/api/v5/cluster", None, None).await;
    assert_eq!(r.status, 401, "anonymous: {}", r.body);
    env.stop().await;
}
