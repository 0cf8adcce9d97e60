//! Read-mostly commands: status, stats, metrics, clients, subscriptions, topics, retained,
//! shadows, cluster status.

use hyper::{Method, StatusCode};
use serde_json::Value;

use super::http::Client;
use super::query::{encode, with_query};
use super::table::{Table, cell, human_duration, key_values};
use super::{
    ClientsCmd, ClusterCmd, Paging, RetainedCmd, ShadowCmd, SubscriptionsCmd, TopicsCmd, print_json,
};

/// `status`: one line and exit 0 when the broker answers, an error (exit 1) when not.
pub(super) async fn status(client: &Client, json: bool) -> Result<(), String> {
    let reply = client
        .send(Method::GET, "/api/v5/status?format=json", None)
        .await?;
    if reply.status == StatusCode::SERVICE_UNAVAILABLE {
        return Err("hermod is not serving (starting up or shutting down)".into());
    }
    if !reply.status.is_success() {
        return Err(client.api_error(&reply));
    }
    let v: Value = serde_json::from_slice(&reply.body)
        .map_err(|e| format!("unexpected answer to /api/v5/status: {e}"))?;
    if json {
        print_json(&v);
        return Ok(());
    }
    let version = v.get("version").and_then(Value::as_str).unwrap_or("?");
    let mut line = format!("hermod {version} is running");
    match v.get("uptime") {
        Some(Value::Number(n)) => {
            line.push_str(", uptime ");
            line.push_str(&human_duration(n.as_u64().unwrap_or(0)));
        }
        Some(Value::String(s)) => {
            line.push_str(", uptime ");
            line.push_str(s);
        }
        _ => {}
    }
    // The client count needs credentials; a bare --url still learns that the broker is up.
    if client.has_credentials()
        && let Ok(stats) = client.get("/api/v5/stats?aggregate=true").await
        && let Some(n) = stats.get("live_connections.count").and_then(Value::as_u64)
    {
        line.push_str(&format!(
            ", {n} client{} connected",
            if n == 1 { "" } else { "s" }
        ));
    }
    println!("{line}");
    Ok(())
}

/// `stats`: the aggregate gauges.
pub(super) async fn stats(client: &Client, json: bool) -> Result<(), String> {
    let v = client.get("/api/v5/stats?aggregate=true").await?;
    show_object(&v, json);
    Ok(())
}

/// `metrics`: the aggregate counters.
pub(super) async fn metrics(client: &Client, json: bool) -> Result<(), String> {
    let v = client.get("/api/v5/metrics?aggregate=true").await?;
    show_object(&v, json);
    Ok(())
}

/// An object as `key  value` lines (keys sorted), or its JSON.
fn show_object(v: &Value, json: bool) {
    if json {
        print_json(v);
        return;
    }
    let pairs: Vec<(String, String)> = v
        .as_object()
        .map(|o| o.iter().map(|(k, v)| (k.clone(), cell(Some(v)))).collect())
        .unwrap_or_default();
    print!("{}", key_values(&pairs));
}

/// `clients list|show|kick`.
pub(super) async fn clients(client: &Client, json: bool, cmd: ClientsCmd) -> Result<(), String> {
    match cmd {
        ClientsCmd::List {
            like,
            username,
            paging,
        } => {
            let path = paged(
                "/api/v5/clients",
                &[("like_clientid", like), ("username", username)],
                paging,
            );
            let v = client.get(&path).await?;
            list(&v, json, "clients", &CLIENT_COLUMNS);
        }
        ClientsCmd::Show { id } => {
            let path = format!("/api/v5/clients/{}", encode(&id));
            let v = client.get(&path).await.map_err(|e| not_found(e, &id))?;
            if json {
                print_json(&v);
                return Ok(());
            }
            let pairs: Vec<(String, String)> = CLIENT_FIELDS
                .iter()
                .map(|(label, f)| ((*label).to_owned(), f(&v)))
                .collect();
            print!("{}", key_values(&pairs));
            let subs = client
                .get(&format!("{path}/subscriptions"))
                .await
                .unwrap_or(Value::Null);
            let rows = subs.as_array().map_or(&[][..], Vec::as_slice);
            if !rows.is_empty() {
                println!();
                print!("{}", table(rows, &SUBSCRIPTION_COLUMNS[1..]).render());
            }
        }
        ClientsCmd::Kick { id } => {
            let path = format!("/api/v5/clients/{}", encode(&id));
            client
                .call(Method::DELETE, &path, None)
                .await
                .map_err(|e| not_found(e, &id))?;
            if !json {
                println!("client {id} disconnected");
            }
        }
    }
    Ok(())
}

/// `subscriptions list`.
pub(super) async fn subscriptions(
    client: &Client,
    json: bool,
    cmd: SubscriptionsCmd,
) -> Result<(), String> {
    let SubscriptionsCmd::List {
        clientid,
        topic,
        paging,
    } = cmd;
    let path = paged(
        "/api/v5/subscriptions",
        &[("clientid", clientid), ("topic", topic)],
        paging,
    );
    let v = client.get(&path).await?;
    list(&v, json, "subscriptions", &SUBSCRIPTION_COLUMNS);
    Ok(())
}

/// `topics list`.
pub(super) async fn topics(client: &Client, json: bool, cmd: TopicsCmd) -> Result<(), String> {
    let TopicsCmd::List { paging } = cmd;
    let v = client.get(&paged("/api/v5/topics", &[], paging)).await?;
    list(&v, json, "topics", &[("TOPIC", |r| field(r, "topic"))]);
    Ok(())
}

/// `retained list|delete`.
pub(super) async fn retained(client: &Client, json: bool, cmd: RetainedCmd) -> Result<(), String> {
    match cmd {
        RetainedCmd::List { filter, paging } => {
            let path = paged(
                "/api/v5/mqtt/retainer/messages",
                &[("topic", filter)],
                paging,
            );
            let v = client.get(&path).await?;
            list(&v, json, "retained messages", &RETAINED_COLUMNS);
        }
        RetainedCmd::Delete { topic } => {
            let path = format!("/api/v5/mqtt/retainer/message/{}", encode(&topic));
            client
                .call(Method::DELETE, &path, None)
                .await
                .map_err(|e| {
                    if e.contains("NOT_FOUND") {
                        format!("no retained message on topic {topic}")
                    } else {
                        e
                    }
                })?;
            if !json {
                println!("retained message on {topic} deleted");
            }
        }
    }
    Ok(())
}

pub(super) async fn shadow(client: &Client, json: bool, cmd: ShadowCmd) -> Result<(), String> {
    match cmd {
        ShadowCmd::List { paging } => {
            let v = client.get(&paged("/api/v5/things", &[], paging)).await?;
            list(&v, json, "things with a shadow", &THING_COLUMNS);
        }
        ShadowCmd::Get { thing, name } => {
            let path = with_query(
                &format!("/api/v5/things/{}/shadow", encode(&thing)),
                &[("name", name.clone())],
            );
            let v = client.get(&path).await.map_err(|e| {
                if e.contains("NOT_FOUND") {
                    match &name {
                        Some(n) => format!("thing {thing} has no shadow named {n}"),
                        None => format!("thing {thing} has no shadow"),
                    }
                } else {
                    e
                }
            })?;
            // The document is JSON whatever the format asked: print it readably.
            print_json(&v);
        }
        ShadowCmd::Update {
            thing,
            document,
            name,
        } => {
            let body: Value = serde_json::from_str(&document)
                .map_err(|e| format!("the update document is not JSON: {e}"))?;
            let path = with_query(
                &format!("/api/v5/things/{}/shadow", encode(&thing)),
                &[("name", name)],
            );
            let v = client.call(Method::PUT, &path, Some(&body)).await?;
            print_json(&v);
        }
        ShadowCmd::Delete { thing, name } => {
            let path = with_query(
                &format!("/api/v5/things/{}/shadow", encode(&thing)),
                &[("name", name.clone())],
            );
            let v = client
                .call(Method::DELETE, &path, None)
                .await
                .map_err(|e| {
                    if e.contains("NOT_FOUND") {
                        format!("thing {thing} has no shadow to delete")
                    } else {
                        e
                    }
                })?;
            if json {
                print_json(&v);
            } else {
                println!(
                    "shadow of {thing} deleted (version {})",
                    field(&v, "version")
                );
            }
        }
    }
    Ok(())
}

/// What `cluster status` prints for a broker without a `[cluster]` section.
const NOT_CLUSTERED: &str =
    "this broker is not clustered (no [cluster] section in its config): a single node";

/// `cluster status`: hermod-cluster's own rendering of `GET /api/v5/cluster`, or one line
/// when the broker is not clustered (exit 0: a single node is a valid state).
pub(super) async fn cluster(client: &Client, json: bool, cmd: ClusterCmd) -> Result<(), String> {
    match cmd {
        ClusterCmd::Status => {
            let v = client.get("/api/v5/cluster").await?;
            if json {
                print_json(&v);
            } else if v.get("enabled").and_then(Value::as_bool) == Some(true) {
                let status: hermod_cluster::ClusterStatus = serde_json::from_value(v)
                    .map_err(|e| format!("unexpected answer to /api/v5/cluster: {e}"))?;
                print!("{}", status.render());
            } else {
                println!("{NOT_CLUSTERED}");
            }
        }
    }
    Ok(())
}

/// Shadows of a thing as `classic v3, cfg v1`.
fn shadow_names(row: &Value) -> String {
    row.get("shadows")
        .and_then(Value::as_array)
        .map(|shadows| {
            shadows
                .iter()
                .map(|s| {
                    let name = s.get("name").and_then(Value::as_str).unwrap_or("classic");
                    format!("{name} v{}", field(s, "version"))
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

const THING_COLUMNS: [Column; 2] = [("THING", |r| field(r, "thing")), ("SHADOWS", shadow_names)];

/// A column: header and how to get the cell from a row.
pub(super) type Column = (&'static str, fn(&Value) -> String);

const CLIENT_COLUMNS: [Column; 9] = [
    ("CLIENT ID", |r| field(r, "clientid")),
    ("USERNAME", |r| field(r, "username")),
    ("ADDRESS", address),
    ("CONNECTED", |r| field(r, "connected")),
    ("MQTT", proto),
    ("SUBS", |r| field(r, "subscriptions_cnt")),
    ("QUEUED", |r| field(r, "mqueue_len")),
    ("INFLIGHT", |r| field(r, "inflight_cnt")),
    ("SINCE", |r| field(r, "connected_at")),
];

/// `clients show`: label and key, in the contract's order.
const CLIENT_FIELDS: [Column; 12] = [
    ("client id", |r| field(r, "clientid")),
    ("username", |r| field(r, "username")),
    ("address", address),
    ("connected", |r| field(r, "connected")),
    ("connected at", |r| field(r, "connected_at")),
    ("protocol", |r| {
        format!("{} {}", field(r, "proto_name"), proto(r))
    }),
    ("keepalive (s)", |r| field(r, "keepalive")),
    ("clean start", |r| field(r, "clean_start")),
    ("session expiry (s)", |r| field(r, "expiry_interval")),
    ("subscriptions", |r| field(r, "subscriptions_cnt")),
    ("queued", |r| field(r, "mqueue_len")),
    ("inflight", |r| field(r, "inflight_cnt")),
];

const SUBSCRIPTION_COLUMNS: [Column; 6] = [
    ("CLIENT ID", |r| field(r, "clientid")),
    ("TOPIC", |r| field(r, "topic")),
    ("QOS", |r| field(r, "qos")),
    ("NO LOCAL", |r| field(r, "nl")),
    ("RETAIN AS PUBLISHED", |r| field(r, "rap")),
    ("RETAIN HANDLING", |r| field(r, "rh")),
];

const RETAINED_COLUMNS: [Column; 4] = [
    ("TOPIC", |r| field(r, "topic")),
    ("QOS", |r| field(r, "qos")),
    ("BYTES", |r| field(r, "payload_size")),
    ("PAYLOAD", payload_preview),
];

pub(super) fn field(row: &Value, key: &str) -> String {
    match row.get(key) {
        // 0/1 flags of subscriptions read better as no/yes.
        Some(Value::Number(n)) if matches!(key, "nl" | "rap") => {
            if n.as_u64() == Some(1) { "yes" } else { "no" }.to_owned()
        }
        other => cell(other),
    }
}

fn address(r: &Value) -> String {
    let ip = field(r, "ip_address");
    match r.get("port").and_then(Value::as_u64) {
        Some(p) if ip.contains(':') => format!("[{ip}]:{p}"),
        Some(p) if !ip.is_empty() => format!("{ip}:{p}"),
        _ => ip,
    }
}

fn proto(r: &Value) -> String {
    match r.get("proto_ver").and_then(Value::as_u64) {
        Some(3) => "3.1".into(),
        Some(4) => "3.1.1".into(),
        Some(5) => "5".into(),
        _ => field(r, "proto_ver"),
    }
}

/// The payload as text when it is short printable UTF-8, else its size.
fn payload_preview(r: &Value) -> String {
    use base64::Engine as _;
    const MAX: usize = 40;
    let Some(bytes) = r
        .get("payload")
        .and_then(Value::as_str)
        .and_then(|p| base64::engine::general_purpose::STANDARD.decode(p).ok())
    else {
        return String::new();
    };
    match std::str::from_utf8(&bytes) {
        Ok(s) if !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => {
            let flat: String = s
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            if flat.chars().count() > MAX {
                format!("{}…", flat.chars().take(MAX - 1).collect::<String>())
            } else {
                flat
            }
        }
        _ => format!("({} bytes, binary)", bytes.len()),
    }
}

/// `path?filters&page=P&limit=L`.
pub(super) fn paged(path: &str, filters: &[(&str, Option<String>)], paging: Paging) -> String {
    let mut pairs: Vec<(&str, Option<String>)> = filters.to_vec();
    pairs.push(("page", Some(paging.page.to_string())));
    pairs.push(("limit", Some(paging.limit.to_string())));
    with_query(path, &pairs)
}

/// Rows as a table.
pub(super) fn table(rows: &[Value], columns: &[Column]) -> Table {
    let headers: Vec<&str> = columns.iter().map(|(h, _)| *h).collect();
    let mut t = Table::new(&headers);
    for r in rows {
        t.row(columns.iter().map(|(_, f)| f(r)).collect());
    }
    t
}

/// A paged list answer (`{"data":[...],"meta":{...}}`) as a table with a footer when there is
/// more, or its JSON.
pub(super) fn list(v: &Value, json: bool, noun: &str, columns: &[Column]) {
    if json {
        print_json(v);
        return;
    }
    let rows = v
        .get("data")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let t = table(rows, columns);
    let meta = v.get("meta");
    let num = |k: &str| meta.and_then(|m| m.get(k)).and_then(Value::as_u64);
    let count = num("count");
    if t.is_empty() {
        match (num("page"), count) {
            (Some(p), Some(c)) if p > 1 && c > 0 => {
                println!("no {noun} on page {p} ({c} in all)");
            }
            _ => println!("no {noun}"),
        }
        return;
    }
    print!("{}", t.render());
    let hasnext = meta
        .and_then(|m| m.get("hasnext"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if hasnext {
        let page = num("page").unwrap_or(1);
        let limit = num("limit").unwrap_or(rows.len() as u64);
        let first = (page - 1) * limit + 1;
        let last = first + rows.len() as u64 - 1;
        let of = count.map_or_else(String::new, |c| format!(" of {c}"));
        println!("({noun} {first}-{last}{of}; --page {} for more)", page + 1);
    }
}

/// A 404 about a client id as "no client ID".
fn not_found(e: String, id: &str) -> String {
    if e.contains("CLIENTID_NOT_FOUND") || e.contains("(NOT_FOUND)") {
        format!("no client {id} (CLIENTID_NOT_FOUND)")
    } else {
        e
    }
}
