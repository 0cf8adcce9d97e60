//! `/users` (admin users) and `/api_key` (API keys): administrator only, but a user may change
//! its own password. Secrets are hashed (argon2id) before they are stored; an API key's secret
//! is shown once, in the answer that creates it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use hermod_broker::banned::{format_rfc3339, parse_rfc3339};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::accounts::{check_name, check_new_password, hash};
use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::users_store::{ApiKeyRecord, Role, UserRecord, random_bytes, random_token};
use crate::state::AppState;

fn admin_only(caller: &Caller) -> Result<(), ApiError> {
    if caller.role == Role::Administrator {
        Ok(())
    } else {
        Err(ApiError::forbidden("administrators only"))
    }
}

fn user_json(u: &UserRecord) -> Value {
    json!({
        "username": u.username,
        "role": u.role.as_str(),
        "description": u.description,
        "password_change_required": u.password_change_required,
    })
}

/// `GET /api/v5/users`.
pub(crate) async fn list_users(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<Value>>, ApiError> {
    admin_only(&caller)?;
    Ok(Json(state.accounts.snapshot().users.iter().map(user_json).collect()))
}

/// The body of `POST /users`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewUser {
    username: String,
    password: String,
    #[serde(default)]
    role: Option<Role>,
    #[serde(default)]
    description: String,
}

/// `POST /api/v5/users`.
pub(crate) async fn add_user(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<NewUser>,
) -> Result<Json<Value>, ApiError> {
    admin_only(&caller)?;
    check_name("username", &body.username)?;
    check_new_password(&body.password)?;
    if state.accounts.user(&body.username).is_some() {
        return Err(ApiError::conflict("this user exists"));
    }
    let record = UserRecord {
        username: body.username,
        password_hash: hash(&body.password).await?,
        role: body.role.unwrap_or(Role::Administrator),
        description: body.description,
        password_change_required: false,
    };
    let r = record.clone();
    state
        .accounts
        .update(move |a| {
            if a.users.iter().any(|u| u.username == r.username) {
                return Err(ApiError::conflict("this user exists"));
            }
            a.users.push(r);
            Ok(())
        })
        .await?;
    Ok(Json(user_json(&record)))
}

/// The body of `PUT /users/{username}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserChange {
    #[serde(default)]
    role: Option<Role>,
    #[serde(default)]
    description: Option<String>,
}

fn administrators(users: &[UserRecord]) -> usize {
    users.iter().filter(|u| u.role == Role::Administrator).count()
}

/// `PUT /api/v5/users/{username}`: role and description.
pub(crate) async fn update_user(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<UserChange>,
) -> Result<Json<Value>, ApiError> {
    admin_only(&caller)?;
    let n = name.clone();
    let updated = state
        .accounts
        .update(move |a| {
            let u = a
                .users
                .iter_mut()
                .find(|u| u.username == n)
                .ok_or_else(|| ApiError::not_found("no such user"))?;
            if let Some(r) = body.role {
                u.role = r;
            }
            if let Some(d) = body.description {
                u.description = d;
            }
            let u = u.clone();
            if administrators(&a.users) == 0 {
                return Err(ApiError::bad_request("the last administrator cannot be demoted"));
            }
            Ok(u)
        })
        .await?;
    // A role change applies at once: existing tokens carry the old role.
    state.tokens.revoke_user(&name);
    Ok(Json(user_json(&updated)))
}

/// `DELETE /api/v5/users/{username}`.
pub(crate) async fn delete_user(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    admin_only(&caller)?;
    let n = name.clone();
    state
        .accounts
        .update(move |a| {
            let before = a.users.len();
            a.users.retain(|u| u.username != n);
            if a.users.len() == before {
                return Err(ApiError::not_found("no such user"));
            }
            if administrators(&a.users) == 0 {
                return Err(ApiError::bad_request("the last administrator cannot be deleted"));
            }
            Ok(())
        })
        .await?;
    state.tokens.revoke_user(&name);
    Ok(StatusCode::NO_CONTENT)
}

/// The body of `POST /users/{username}/change_pwd`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasswordChange {
    #[serde(default)]
    old_pwd: Option<String>,
    new_pwd: String,
}

/// `POST /api/v5/users/{username}/change_pwd`. A user changing its own password gives the old
/// one; an administrator (or the socket) may reset another user's without it.
pub(crate) async fn change_password(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    let own = caller.is_user && caller.name == name;
    if !own {
        admin_only(&caller)?;
    }
    if state.accounts.user(&name).is_none() {
        return Err(ApiError::not_found("no such user"));
    }
    if own {
        let old = body.old_pwd.as_deref().unwrap_or_default();
        if state.accounts.check_password(&name, old).await?.is_none() {
            return Err(ApiError::bad_request("`old_pwd` is wrong"));
        }
    }
    check_new_password(&body.new_pwd)?;
    let new_hash = hash(&body.new_pwd).await?;
    let n = name.clone();
    let was_initial = state
        .accounts
        .update(move |a| {
            let u = a
                .users
                .iter_mut()
                .find(|u| u.username == n)
                .ok_or_else(|| ApiError::not_found("no such user"))?;
            u.password_hash = new_hash;
            Ok(std::mem::take(&mut u.password_change_required))
        })
        .await?;
    if was_initial && let Some(dir) = state.accounts.store_dir() {
        // The generated password no longer works: do not leave it lying around.
        let _ = std::fs::remove_file(dir.join(crate::users_store::INITIAL_PASSWORD_FILE));
    }
    tracing::info!(user = %name, by = %caller.name, "admin API: password changed");
    Ok(StatusCode::NO_CONTENT)
}

fn key_json(k: &ApiKeyRecord) -> Value {
    json!({
        "name": k.name,
        "api_key": k.api_key,
        "role": k.role.as_str(),
        "enable": k.enable,
        "expired_at": k.expired_at.map(format_rfc3339),
        "desc": k.desc,
    })
}

/// `GET /api/v5/api_key`.
pub(crate) async fn list_keys(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<Value>>, ApiError> {
    admin_only(&caller)?;
    Ok(Json(state.accounts.snapshot().api_keys.iter().map(key_json).collect()))
}

/// `GET /api/v5/api_key/{name}`.
pub(crate) async fn get_key(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    admin_only(&caller)?;
    state
        .accounts
        .api_key(&name)
        .map(|k| Json(key_json(&k)))
        .ok_or_else(|| ApiError::not_found("no such API key"))
}

/// The body of `POST /api_key` and `PUT /api_key/{name}`.
#[derive(Debug, Deserialize)]
pub(crate) struct KeyBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    role: Option<Role>,
    #[serde(default)]
    enable: Option<bool>,
    /// RFC 3339, or null / "infinity" for never.
    #[serde(default)]
    expired_at: Option<String>,
    #[serde(default)]
    desc: Option<String>,
}

fn expiry(s: Option<&str>) -> Result<Option<i64>, ApiError> {
    match s {
        None | Some("" | "infinity") => Ok(None),
        Some(t) => parse_rfc3339(t)
            .map(Some)
            .map_err(|e| ApiError::bad_request(format!("`expired_at`: {e}"))),
    }
}

/// `POST /api/v5/api_key` → the key, with `api_secret` (shown only here).
pub(crate) async fn add_key(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<KeyBody>,
) -> Result<Json<Value>, ApiError> {
    admin_only(&caller)?;
    let name = body.name.unwrap_or_default();
    check_name("name", &name)?;
    if state.accounts.api_key(&name).is_some() {
        return Err(ApiError::conflict("an API key with this name exists"));
    }
    let api_key: String = random_bytes::<8>()
        .map_err(ApiError::internal)?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let secret = random_token().map_err(ApiError::internal)?;
    let record = ApiKeyRecord {
        name: name.clone(),
        api_key,
        secret_hash: hash(&secret).await?,
        role: body.role.unwrap_or(Role::Administrator),
        enable: body.enable.unwrap_or(true),
        expired_at: expiry(body.expired_at.as_deref())?,
        desc: body.desc.unwrap_or_default(),
    };
    let r = record.clone();
    state
        .accounts
        .update(move |a| {
            if a.api_keys.iter().any(|k| k.name == r.name) {
                return Err(ApiError::conflict("an API key with this name exists"));
            }
            a.api_keys.push(r);
            Ok(())
        })
        .await?;
    let mut v = key_json(&record);
    v["api_secret"] = Value::from(secret);
    Ok(Json(v))
}

/// `PUT /api/v5/api_key/{name}`: role, enable, expired_at, desc.
pub(crate) async fn update_key(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<KeyBody>,
) -> Result<Json<Value>, ApiError> {
    admin_only(&caller)?;
    let expired_at = match body.expired_at.as_deref() {
        None => None,
        Some(s) => Some(expiry(Some(s))?),
    };
    let updated = state
        .accounts
        .update(move |a| {
            let k = a
                .api_keys
                .iter_mut()
                .find(|k| k.name == name)
                .ok_or_else(|| ApiError::not_found("no such API key"))?;
            if let Some(r) = body.role {
                k.role = r;
            }
            if let Some(e) = body.enable {
                k.enable = e;
            }
            if let Some(t) = expired_at {
                k.expired_at = t;
            }
            if let Some(d) = body.desc {
                k.desc = d;
            }
            Ok(k.clone())
        })
        .await?;
    state.accounts.forget_key(&updated.api_key);
    Ok(Json(key_json(&updated)))
}

/// `DELETE /api/v5/api_key/{name}`.
pub(crate) async fn delete_key(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    admin_only(&caller)?;
    let removed = state
        .accounts
        .update(move |a| {
            let pos = a
                .api_keys
                .iter()
                .position(|k| k.name == name)
                .ok_or_else(|| ApiError::not_found("no such API key"))?;
            Ok(a.api_keys.remove(pos))
        })
        .await?;
    state.accounts.forget_key(&removed.api_key);
    Ok(StatusCode::NO_CONTENT)
}
