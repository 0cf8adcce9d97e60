//! Admin users and API keys at rest: `<store path>/admin-users.json`, mode 0600, written
//! atomically (a temp file in the same folder, fsynced, then renamed over the old one), so a
//! crash leaves the old file or the new one, never half of one. Passwords and API secrets are
//! argon2id PHC strings; nothing secret is stored in the clear. With `[store] sync = "memory"`
//! there is no file and accounts live as long as the process.
//!
//! Also the random values the admin API hands out (initial password, tokens, API keys and
//! secrets), all from the OS CSPRNG (`getrandom`).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// The file's name in the store folder.
pub(crate) const USERS_FILE: &str = "admin-users.json";
/// The file holding the generated password of the first `admin` user.
pub(crate) const INITIAL_PASSWORD_FILE: &str = "initial-admin-password";

/// A role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Role {
    /// Everything.
    Administrator,
    /// `GET` only.
    Viewer,
}

impl Role {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Administrator => "administrator",
            Role::Viewer => "viewer",
        }
    }
}

/// One admin user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct UserRecord {
    pub(crate) username: String,
    /// argon2id PHC string.
    pub(crate) password_hash: String,
    pub(crate) role: Role,
    #[serde(default)]
    pub(crate) description: String,
    /// Set for the generated first password, cleared by a password change.
    #[serde(default)]
    pub(crate) password_change_required: bool,
}

/// One API key (HTTP Basic `api_key:api_secret`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ApiKeyRecord {
    pub(crate) name: String,
    pub(crate) api_key: String,
    /// argon2id PHC string of the secret.
    pub(crate) secret_hash: String,
    pub(crate) role: Role,
    pub(crate) enable: bool,
    /// Unix seconds after which the key no longer works; `None`: never.
    #[serde(default)]
    pub(crate) expired_at: Option<i64>,
    #[serde(default)]
    pub(crate) desc: String,
}

/// Everything the file holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Accounts {
    #[serde(default)]
    pub(crate) users: Vec<UserRecord>,
    #[serde(default)]
    pub(crate) api_keys: Vec<ApiKeyRecord>,
}

/// Where accounts are kept: a file, or nowhere (memory store).
#[derive(Debug, Clone)]
pub(crate) struct UsersFile {
    path: Option<PathBuf>,
}

impl UsersFile {
    /// `dir`: the store folder, `None` for an in-memory store.
    pub(crate) fn new(dir: Option<&Path>) -> Self {
        Self {
            path: dir.map(|d| d.join(USERS_FILE)),
        }
    }

    pub(crate) fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The accounts on disk; empty when there is no file (first start, or memory store).
    ///
    /// # Errors
    /// The file exists but cannot be read or parsed (naming it): refusing to start beats
    /// silently creating a new `admin` next to users someone set up.
    pub(crate) fn load(&self) -> Result<Accounts, String> {
        let Some(path) = &self.path else {
            return Ok(Accounts::default());
        };
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("{}: not a valid admin users file: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Accounts::default()),
            Err(e) => Err(format!("{}: cannot read: {e}", path.display())),
        }
    }

    /// Writes `accounts` atomically (mode 0600). Blocking: call it from `spawn_blocking`.
    ///
    /// # Errors
    /// I/O errors, naming the file.
    pub(crate) fn save(&self, accounts: &Accounts) -> Result<(), String> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let json = serde_json::to_vec_pretty(accounts).map_err(|e| e.to_string())?;
        write_private_atomically(path, &json).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Opens `path` for writing, created with mode 0600 (owner only) where the OS has modes.
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let file = options.open(path)?;
    // An existing file keeps its mode on open: set it again.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

/// Writes `data` to `path` with mode 0600: temp file, fsync, rename, fsync of the folder.
pub(crate) fn write_private_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = create_private(&tmp)?;
    file.write_all(data)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// `n` random bytes from the OS CSPRNG.
///
/// # Errors
/// The OS has no randomness to give (then nothing secret may be made up).
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], String> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| format!("no randomness from the OS: {e}"))?;
    Ok(buf)
}

/// A random password: 18 bytes, base64url (24 characters).
pub(crate) fn random_password() -> Result<String, String> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<18>()?))
}

/// A login token: 32 random bytes, base64url (43 characters).
pub(crate) fn random_token() -> Result<String, String> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<32>()?))
}

/// An argon2id PHC string of `secret`. CPU-heavy (tens of milliseconds): call it from
/// `spawn_blocking`.
pub(crate) fn hash_secret(secret: &str) -> Result<String, String> {
    hermod_broker::auth::hash_argon2id(secret.as_bytes())
}

/// Whether `secret` matches the PHC string `hash`. CPU-heavy: call it from `spawn_blocking`.
/// Goes through the broker's password-file verifier, which bounds argon2 parameters and reuses
/// its working memory per thread.
pub(crate) fn verify_secret(hash: &str, secret: &str) -> bool {
    hermod_broker::auth::PasswordFile::parse(&format!("u:{hash}\n"), "admin users")
        .is_ok_and(|f| f.verify("u", secret.as_bytes()))
}

/// Writes the generated first password to `dir/initial-admin-password` (mode 0600).
pub(crate) fn write_initial_password(dir: &Path, password: &str) -> std::io::Result<PathBuf> {
    let path = dir.join(INITIAL_PASSWORD_FILE);
    write_private_atomically(&path, format!("{password}\n").as_bytes())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_hash_and_verify() {
        let h = hash_secret("correct horse").expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_secret(&h, "correct horse"));
        assert!(!verify_secret(&h, "wrong"));
        assert!(!verify_secret("garbage", "x"));
    }

    #[test]
    fn random_values_are_long_and_distinct() {
        let (a, b) = (
            random_password().expect("rng"),
            random_password().expect("rng"),
        );
        assert!(a.len() >= 16 && a != b);
        assert_eq!(random_token().expect("rng").len(), 43);
    }

    #[cfg(unix)]
    #[test]
    fn file_is_written_atomically_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let f = UsersFile::new(Some(dir.path()));
        assert!(f.load().expect("no file yet").users.is_empty());
        let acc = Accounts {
            users: vec![UserRecord {
                username: "u".into(),
                password_hash: "h".into(),
                role: Role::Viewer,
                description: String::new(),
                password_change_required: false,
            }],
            api_keys: Vec::new(),
        };
        f.save(&acc).expect("save");
        let mode = std::fs::metadata(dir.path().join(USERS_FILE))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(f.load().expect("load").users.len(), 1);
        std::fs::write(dir.path().join(USERS_FILE), "{nope").expect("write");
        assert!(f.load().is_err());
    }
}
