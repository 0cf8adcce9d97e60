//! Admin users and API keys in memory, saved through `users_store` after every change.
//!
//! Safe by default: there is no built-in password. On the first start without any user,
//! `admin` is created with a random password that is logged once (warn level) and written to
//! `<store path>/initial-admin-password` (mode 0600); it works, but `password_change_required`
//! stays true until it is changed. Argon2 runs in `spawn_blocking`, never on a runtime thread.
//! Changes are serialised (one at a time, saved before the next starts) so the file always
//! matches memory.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::users_store::{
    Accounts, ApiKeyRecord, Role, UserRecord, UsersFile, hash_secret, random_password,
    verify_secret, write_initial_password,
};

/// Users and API keys.
#[derive(Debug)]
pub(crate) struct AccountStore {
    data: Mutex<Accounts>,
    file: UsersFile,
    /// One change at a time, saved before the next.
    writer: tokio::sync::Mutex<()>,
    /// API key → SHA-256 of its secret, once argon2 has accepted the secret.
    verified: Mutex<HashMap<String, [u8; 32]>>,
}

/// Runs a CPU-heavy closure off the runtime threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("hashing task failed: {e}")))
}

/// A hash to check against when the user does not exist, so that an unknown name costs the
/// same time as a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_secret("not a password").unwrap_or_default())
}

impl AccountStore {
    /// Loads the accounts from `store_dir` (`None`: memory only) and creates the first `admin`
    /// when there is no user.
    ///
    /// # Errors
    /// The users file exists but is unreadable, or it cannot be written.
    pub(crate) async fn open(store_dir: Option<&Path>) -> Result<Self, String> {
        let file = UsersFile::new(store_dir);
        let f = file.clone();
        let mut accounts = tokio::task::spawn_blocking(move || f.load())
            .await
            .map_err(|e| e.to_string())??;
        if accounts.users.is_empty() {
            let password = random_password()?;
            let p = password.clone();
            let hash = tokio::task::spawn_blocking(move || hash_secret(&p))
                .await
                .map_err(|e| e.to_string())??;
            accounts.users.push(UserRecord {
                username: "admin".into(),
                password_hash: hash,
                role: Role::Administrator,
                description: "created at first start".into(),
                password_change_required: true,
            });
            let (f, snapshot) = (file.clone(), accounts.clone());
            tokio::task::spawn_blocking(move || f.save(&snapshot))
                .await
                .map_err(|e| e.to_string())??;
            match store_dir {
                Some(dir) => {
                    let path = write_initial_password(dir, &password)
                        .map_err(|e| format!("{}: {e}", dir.display()))?;
                    tracing::warn!(
                        "admin API: created user `admin` with password `{password}` (also in {}, mode 0600); change it after logging in",
                        path.display()
                    );
                }
                None => tracing::warn!(
                    "admin API: created user `admin` with password `{password}` (memory store: not saved anywhere); change it after logging in"
                ),
            }
        }
        // Computed now, off the request path.
        let _ = tokio::task::spawn_blocking(dummy_hash).await;
        Ok(Self {
            data: Mutex::new(accounts),
            file,
            writer: tokio::sync::Mutex::new(()),
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// No accounts, nothing saved (the admin listener is disabled: only `/metrics` is served).
    pub(crate) fn empty() -> Self {
        Self {
            data: Mutex::new(Accounts::default()),
            file: UsersFile::new(None),
            writer: tokio::sync::Mutex::new(()),
            verified: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Accounts> {
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn verified(&self) -> MutexGuard<'_, HashMap<String, [u8; 32]>> {
        self.verified.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The store folder's users file, if any.
    pub(crate) fn store_dir(&self) -> Option<&Path> {
        self.file.path().and_then(Path::parent)
    }

    /// Applies `change` to the accounts and saves them; the change's error leaves both as they
    /// were.
    pub(crate) async fn update<T>(
        &self,
        change: impl FnOnce(&mut Accounts) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let _one_at_a_time = self.writer.lock().await;
        let (out, snapshot) = {
            let mut data = self.lock();
            let mut next = data.clone();
            let out = change(&mut next)?;
            *data = next.clone();
            (out, next)
        };
        let file = self.file.clone();
        blocking(move || file.save(&snapshot))
            .await?
            .map_err(ApiError::internal)?;
        Ok(out)
    }

    /// A copy of the accounts.
    pub(crate) fn snapshot(&self) -> Accounts {
        self.lock().clone()
    }

    /// Checks a user's password: `Some((role, password_change_required))` if right.
    pub(crate) async fn check_password(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<(Role, bool)>, ApiError> {
        let user = self
            .lock()
            .users
            .iter()
            .find(|u| u.username == username)
            .cloned();
        let hash = user
            .as_ref()
            .map_or_else(|| dummy_hash().to_owned(), |u| u.password_hash.clone());
        let password = password.to_owned();
        let ok = blocking(move || verify_secret(&hash, &password)).await?;
        Ok(user
            .filter(|_| ok)
            .map(|u| (u.role, u.password_change_required)))
    }

    /// The name and role of an API key whose secret is right, enabled and not expired.
    pub(crate) async fn check_api_key(&self, api_key: &str, secret: &str) -> Option<(String, Role)> {
        let record = self
            .lock()
            .api_keys
            .iter()
            .find(|k| k.api_key == api_key)
            .cloned()?;
        let now = hermod_broker::banned::unix_secs(std::time::SystemTime::now());
        if !record.enable || record.expired_at.is_some_and(|t| t <= now) {
            return None;
        }
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        if self.verified().get(api_key) == Some(&digest) {
            return Some((record.name, record.role));
        }
        let (hash, s) = (record.secret_hash.clone(), secret.to_owned());
        if blocking(move || verify_secret(&hash, &s)).await.ok()? {
            let mut cache = self.verified();
            if cache.len() >= 10_000 {
                cache.clear();
            }
            cache.insert(api_key.to_owned(), digest);
            Some((record.name, record.role))
        } else {
            None
        }
    }

    /// Forgets the remembered secret of `api_key` (changed or deleted).
    pub(crate) fn forget_key(&self, api_key: &str) {
        self.verified().remove(api_key);
    }

    /// The user record, if any.
    pub(crate) fn user(&self, username: &str) -> Option<UserRecord> {
        self.lock()
            .users
            .iter()
            .find(|u| u.username == username)
            .cloned()
    }

    /// The API key record named `name`.
    pub(crate) fn api_key(&self, name: &str) -> Option<ApiKeyRecord> {
        self.lock()
            .api_keys
            .iter()
            .find(|k| k.name == name)
            .cloned()
    }
}

/// Hashes a new secret off the runtime threads.
pub(crate) async fn hash(secret: &str) -> Result<String, ApiError> {
    let s = secret.to_owned();
    blocking(move || hash_secret(&s))
        .await?
        .map_err(ApiError::internal)
}

/// Checks a new password's length (the only rule: long beats clever).
pub(crate) fn check_new_password(p: &str) -> Result<(), ApiError> {
    if p.chars().count() < 8 {
        return Err(ApiError::bad_request(
            "the password must have at least 8 characters",
        ));
    }
    if p.len() > 1024 {
        return Err(ApiError::bad_request("the password is too long"));
    }
    Ok(())
}

/// Checks a user or API key name: 1 to 64 characters, letters, digits, `-`, `_`, `.`, `@`.
pub(crate) fn check_name(what: &str, n: &str) -> Result<(), ApiError> {
    let ok = !n.is_empty()
        && n.len() <= 64
        && n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "`{what}` must be 1 to 64 letters, digits, '-', '_', '.' or '@'"
        )))
    }
}
