//! Commands that change the broker: bans, admin users, API keys, reload.

use std::time::{SystemTime, UNIX_EPOCH};

use hermod_broker::banned::{format_rfc3339, parse_rfc3339};
use hermod_broker::config::parse_duration;
use hyper::Method;
use serde_json::{Value, json};

use super::commands::{Column, field, list, paged, table};
use super::http::Client;
use super::query::encode;
use super::table::key_values;
use super::{AdminsCmd, ApiKeysCmd, BannedCmd, print_json};

/// `banned add|list|del`.
pub(super) async fn banned(client: &Client, json: bool, cmd: BannedCmd) -> Result<(), String> {
    match cmd {
        BannedCmd::Add {
            clientid,
            username,
            peerhost,
            until,
            for_,
            reason,
        } => {
            let (kind, who) = match (clientid, username, peerhost) {
                (Some(c), _, _) => ("clientid", c),
                (_, Some(u), _) => ("username", u),
                (_, _, Some(p)) => (peerhost_kind(&p), p),
                _ => return Err("say whom to ban: --clientid, --username or --peerhost".into()),
            };
            let until = match (until, for_) {
                (Some(t), _) => Some(format_rfc3339(
                    parse_rfc3339(&t).map_err(|e| format!("--until: {e}"))?,
                )),
                (None, Some(d)) => {
                    let d = parse_duration(&d).map_err(|e| format!("--for: {e}"))?;
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |n| n.as_secs());
                    let end = now.saturating_add(d.as_secs());
                    Some(format_rfc3339(i64::try_from(end).unwrap_or(i64::MAX / 2)))
                }
                (None, None) => None,
            };
            let mut body = json!({"as": kind, "who": who});
            if let Some(u) = until {
                body["until"] = Value::String(u);
            }
            if let Some(r) = reason {
                body["reason"] = Value::String(r);
            }
            let v = client
                .call(Method::POST, "/api/v5/banned", Some(&body))
                .await?;
            if json {
                print_json(&v);
            } else {
                let until = v
                    .get("until")
                    .and_then(Value::as_str)
                    .map_or_else(|| "with no end".to_owned(), |u| format!("until {u}"));
                println!("banned {kind} {who} {until}");
            }
        }
        BannedCmd::List { paging } => {
            let v = client.get(&paged("/api/v5/banned", &[], paging)).await?;
            list(&v, json, "bans", &BANNED_COLUMNS);
        }
        BannedCmd::Del { kind, who } => {
            let kind = if kind == "peerhost" {
                peerhost_kind(&who)
            } else {
                kind.as_str()
            };
            let path = format!("/api/v5/banned/{}/{}", encode(kind), encode(&who));
            client
                .call(Method::DELETE, &path, None)
                .await
                .map_err(|e| {
                    if e.contains("NOT_FOUND") {
                        format!("{kind} {who} is not banned")
                    } else {
                        e
                    }
                })?;
            if !json {
                println!("ban on {kind} {who} lifted");
            }
        }
    }
    Ok(())
}

/// `peerhost_net` for a CIDR network, `peerhost` for one address.
fn peerhost_kind(who: &str) -> &'static str {
    if who.contains('/') {
        "peerhost_net"
    } else {
        "peerhost"
    }
}

const BANNED_COLUMNS: [Column; 5] = [
    ("AS", |r| field(r, "as")),
    ("WHO", |r| field(r, "who")),
    ("UNTIL", |r| {
        let u = field(r, "until");
        if u.is_empty() { "-".into() } else { u }
    }),
    ("BY", |r| field(r, "by")),
    ("REASON", |r| field(r, "reason")),
];

/// `admins add|passwd|del|list`.
pub(super) async fn admins(client: &Client, json: bool, cmd: AdminsCmd) -> Result<(), String> {
    match cmd {
        AdminsCmd::Add {
            user,
            role,
            description,
        } => {
            let password = read_password()?;
            let body = json!({
                "username": user,
                "password": password,
                "role": role,
                "description": description.unwrap_or_default(),
            });
            let v = client
                .call(Method::POST, "/api/v5/users", Some(&body))
                .await?;
            if json {
                print_json(&v);
            } else {
                println!("user {user} added ({role})");
            }
        }
        AdminsCmd::Passwd { user } => {
            let password = read_password()?;
            let path = format!("/api/v5/users/{}/change_pwd", encode(&user));
            // Over the socket (an administrator) the old password is not needed.
            let body = json!({"new_pwd": password});
            client
                .call(Method::POST, &path, Some(&body))
                .await
                .map_err(|e| user_not_found(e, &user))?;
            if !json {
                println!("password of {user} changed");
            }
        }
        AdminsCmd::Del { user } => {
            let path = format!("/api/v5/users/{}", encode(&user));
            client
                .call(Method::DELETE, &path, None)
                .await
                .map_err(|e| user_not_found(e, &user))?;
            if !json {
                println!("user {user} deleted");
            }
        }
        AdminsCmd::List => {
            let v = client.get("/api/v5/users").await?;
            unpaged(&v, json, "users", &USER_COLUMNS);
        }
    }
    Ok(())
}

const USER_COLUMNS: [Column; 3] = [
    ("USERNAME", |r| field(r, "username")),
    ("ROLE", |r| field(r, "role")),
    ("DESCRIPTION", |r| field(r, "description")),
];

fn user_not_found(e: String, user: &str) -> String {
    if e.contains("NOT_FOUND") {
        format!("no user {user}")
    } else {
        e
    }
}

/// A password from stdin (one line) or asked twice on a terminal without echo.
fn read_password() -> Result<String, String> {
    let p = crate::passwd_cmd::prompt_password().map_err(|e| {
        e.strip_prefix("Error: ")
            .map_or_else(|| e.clone(), str::to_owned)
    })?;
    if p.is_empty() {
        return Err("empty password".into());
    }
    Ok(p)
}

/// `api-keys add|list|del`.
pub(super) async fn api_keys(client: &Client, json: bool, cmd: ApiKeysCmd) -> Result<(), String> {
    match cmd {
        ApiKeysCmd::Add { name, role, desc } => {
            let body = json!({
                "name": name,
                "role": role,
                "enable": true,
                "desc": desc.unwrap_or_default(),
            });
            let v = client
                .call(Method::POST, "/api/v5/api_key", Some(&body))
                .await?;
            if json {
                print_json(&v);
                return Ok(());
            }
            let key = field(&v, "api_key");
            let secret = field(&v, "api_secret");
            print!(
                "{}",
                key_values(&[
                    ("name".into(), name),
                    ("role".into(), role),
                    ("api_key".into(), key.clone()),
                    ("api_secret".into(), secret.clone()),
                ])
            );
            println!("The secret is shown only now. Use: --api-key {key}:{secret}");
        }
        ApiKeysCmd::List => {
            let v = client.get("/api/v5/api_key").await?;
            unpaged(&v, json, "API keys", &API_KEY_COLUMNS);
        }
        ApiKeysCmd::Del { name } => {
            let path = format!("/api/v5/api_key/{}", encode(&name));
            client
                .call(Method::DELETE, &path, None)
                .await
                .map_err(|e| {
                    if e.contains("NOT_FOUND") {
                        format!("no API key {name}")
                    } else {
                        e
                    }
                })?;
            if !json {
                println!("API key {name} deleted");
            }
        }
    }
    Ok(())
}

const API_KEY_COLUMNS: [Column; 6] = [
    ("NAME", |r| field(r, "name")),
    ("API KEY", |r| field(r, "api_key")),
    ("ROLE", |r| field(r, "role")),
    ("ENABLED", |r| field(r, "enable")),
    ("EXPIRES", |r| {
        let e = field(r, "expired_at");
        if e.is_empty() || e == "infinity" {
            "-".into()
        } else {
            e
        }
    }),
    ("DESCRIPTION", |r| field(r, "desc")),
];

/// A list answer that is a bare array (users, API keys) — or a paged object, in case.
fn unpaged(v: &Value, json: bool, noun: &str, columns: &[Column]) {
    if v.get("data").is_some() {
        list(v, json, noun, columns);
        return;
    }
    if json {
        print_json(v);
        return;
    }
    let rows = v.as_array().map_or(&[][..], Vec::as_slice);
    if rows.is_empty() {
        println!("no {noun}");
    } else {
        print!("{}", table(rows, columns).render());
    }
}

/// `reload`: the broker re-reads its configuration (as on SIGHUP).
pub(super) async fn reload(client: &Client, json: bool) -> Result<(), String> {
    let v = client
        .call(Method::POST, "/api/v5/reload", None)
        .await
        .map_err(|e| format!("reload failed, the previous configuration stays in force: {e}"))?;
    if json {
        print_json(&v);
    } else {
        println!("configuration reloaded");
    }
    Ok(())
}
