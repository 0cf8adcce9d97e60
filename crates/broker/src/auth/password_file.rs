//! Mosquitto-compatible `password_file`: one `user:hash` per line.
//!
//! Accepted hashes (so an existing Mosquitto file can be pointed at Hermod unchanged):
//! - `$7$<iterations>$<b64 salt>$<b64 hash>`: PBKDF2-HMAC-SHA512, 64-byte output, what
//!   `mosquitto_passwd` 2.x writes (101 iterations, 12-byte salt, standard base64 with padding);
//! - `$6$<b64 salt>$<b64 hash>`: legacy Mosquitto 1.x, SHA-512(password || salt);
//! - `$argon2id$v=19$m=..,t=..,p=..$salt$hash`: PHC string, Hermod's default when writing.
//!
//! Blank lines and lines starting with `#` are ignored on load but kept by
//! [`PasswordFile::to_file_string`], so `hermod passwd` does not destroy an operator's comments.

use super::AuthFileError;
use argon2::password_hash::PasswordHasher;
use argon2::{Argon2, PasswordHash};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use sha2::{Digest, Sha512};
use std::collections::HashMap;
use std::fmt;
use std::path::Path;

/// Iterations `mosquitto_passwd` 2.0 uses for `$7$` hashes (kept for compatibility: the
/// broker must verify with whatever count the line names; we only choose it when writing).
const MOSQUITTO_ITERATIONS: u32 = 101;
/// Salt length `mosquitto_passwd` uses.
const MOSQUITTO_SALT_LEN: usize = 12;
/// Largest argon2 memory cost (KiB) a line may ask for: 1 GiB, libsodium's "sensitive" level
/// and 50 times the OWASP recommendation. Verification allocates that much on every CONNECT for
/// the user, so a larger value (the PHC syntax allows up to 4 TiB) is refused at load.
const MAX_ARGON2_M_COST: u32 = 1024 * 1024;

/// A parsed password file. Immutable once loaded; reload builds a new one.
#[derive(Clone)]
pub struct PasswordFile {
    lines: Vec<Line>,
    index: HashMap<String, usize>,
}

#[derive(Clone)]
enum Line {
    /// Comment or blank line, written back verbatim.
    Other(String),
    Entry {
        user: String,
        hash: Hash,
    },
}

/// A stored password hash. Its `Debug` never shows the material.
#[derive(Clone)]
enum Hash {
    Pbkdf2Sha512 {
        iterations: u32,
        salt: Vec<u8>,
        hash: Vec<u8>,
        text: String,
    },
    Sha512 {
        salt: Vec<u8>,
        hash: Vec<u8>,
        text: String,
    },
    Argon2 {
        text: String,
    },
}

impl fmt::Debug for PasswordFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordFile")
            .field("users", &self.index.len())
            .finish_non_exhaustive()
    }
}

impl PasswordFile {
    /// Reads and parses `path`; errors name the file and the line.
    pub fn load(path: &Path) -> Result<Self, AuthFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthFileError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses file contents; `origin` names the file in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Self, AuthFileError> {
        let mut file = PasswordFile {
            lines: Vec::new(),
            index: HashMap::new(),
        };
        for (n, raw) in text.lines().enumerate() {
            let line_no = n + 1;
            let err = |message: String| AuthFileError::Syntax {
                origin: origin.to_owned(),
                line: line_no,
                message,
            };
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                file.lines.push(Line::Other(raw.to_owned()));
                continue;
            }
            let Some((user, hash_text)) = trimmed.split_once(':') else {
                return Err(err("expected `user:hash`".into()));
            };
            let user = user.trim();
            if user.is_empty() {
                return Err(err("empty username".into()));
            }
            let hash =
                Hash::parse(hash_text.trim()).map_err(|m| err(format!("user '{user}': {m}")))?;
            if let Some(&first) = file.index.get(user) {
                return Err(err(format!(
                    "duplicate user '{user}' (first on line {})",
                    first + 1
                )));
            }
            file.index.insert(user.to_owned(), file.lines.len());
            file.lines.push(Line::Entry {
                user: user.to_owned(),
                hash,
            });
        }
        Ok(file)
    }

    /// An empty file (for `hermod passwd -c`).
    pub fn empty() -> Self {
        PasswordFile {
            lines: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether the file has no users.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Whether `user` has an entry.
    pub fn contains(&self, user: &str) -> bool {
        self.index.contains_key(user)
    }

    /// Checks `password` for `user`. The final comparison is constant-time, and an unknown user
    /// still costs one hash computation (against another entry's parameters) so response time
    /// does not reveal which usernames exist.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        match self.index.get(user).and_then(|&i| self.lines.get(i)) {
            Some(Line::Entry { hash, .. }) => hash.verify(password),
            _ => {
                if let Some(Line::Entry { hash, .. }) =
                    self.index.values().next().and_then(|&i| self.lines.get(i))
                {
                    let _ = std::hint::black_box(hash.verify(password));
                }
                false
            }
        }
    }

    /// Adds or replaces `user` with an already-computed hash line (e.g. from
    /// [`hash_argon2id`]). Keeps the position of an existing entry.
    pub fn set(&mut self, user: &str, hash_text: &str) -> Result<(), String> {
        if user.is_empty() || user.contains(':') || user.contains(['\n', '\r']) {
            return Err("username must be non-empty and contain no ':' or newline".into());
        }
        let hash = Hash::parse(hash_text)?;
        match self.index.get(user) {
            Some(&i) => {
                if let Some(slot) = self.lines.get_mut(i) {
                    *slot = Line::Entry {
                        user: user.to_owned(),
                        hash,
                    };
                }
            }
            None => {
                self.index.insert(user.to_owned(), self.lines.len());
                self.lines.push(Line::Entry {
                    user: user.to_owned(),
                    hash,
                });
            }
        }
        Ok(())
    }

    /// Removes `user`; returns whether it existed.
    pub fn remove(&mut self, user: &str) -> bool {
        let Some(i) = self.index.remove(user) else {
            return false;
        };
        self.lines.remove(i);
        for v in self.index.values_mut() {
            if *v > i {
                *v -= 1;
            }
        }
        true
    }

    /// The file contents, entries and comments in their original order.
    pub fn to_file_string(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            match line {
                Line::Other(s) => out.push_str(s),
                Line::Entry { user, hash } => {
                    out.push_str(user);
                    out.push(':');
                    out.push_str(hash.text());
                }
            }
            out.push('\n');
        }
        out
    }
}

impl Hash {
    fn parse(text: &str) -> Result<Hash, String> {
        if text.starts_with("$argon2") {
            let parsed =
                PasswordHash::new(text).map_err(|e| format!("invalid argon2 PHC string: {e}"))?;
            // Checked here, not at the first CONNECT: parameters argon2 cannot run (m < 8p, ...)
            // would make the user unable to log in, and a huge memory cost would allocate it.
            let params = argon2::Params::try_from(&parsed)
                .map_err(|e| format!("invalid argon2 parameters: {e}"))?;
            if params.m_cost() > MAX_ARGON2_M_COST {
                return Err(format!(
                    "argon2 memory cost m={} KiB is above the {MAX_ARGON2_M_COST} KiB (1 GiB) limit",
                    params.m_cost()
                ));
            }
            return Ok(Hash::Argon2 {
                text: text.to_owned(),
            });
        }
        let parts: Vec<&str> = text.split('$').collect();
        match parts.as_slice() {
            ["", "7", iterations, salt, hash] => {
                let iterations: u32 = iterations
                    .parse()
                    .ok()
                    .filter(|&i| i > 0)
                    .ok_or("invalid iteration count in $7$ hash")?;
                let salt = b64(salt).ok_or("invalid base64 salt in $7$ hash")?;
                let hash = b64(hash).ok_or("invalid base64 hash in $7$ hash")?;
                if hash.len() != 64 {
                    return Err("a $7$ hash must decode to 64 bytes".into());
                }
                Ok(Hash::Pbkdf2Sha512 {
                    iterations,
                    salt,
                    hash,
                    text: text.to_owned(),
                })
            }
            ["", "6", salt, hash] => {
                let salt = b64(salt).ok_or("invalid base64 salt in $6$ hash")?;
                let hash = b64(hash).ok_or("invalid base64 hash in $6$ hash")?;
                if hash.len() != 64 {
                    return Err("a $6$ hash must decode to 64 bytes".into());
                }
                Ok(Hash::Sha512 {
                    salt,
                    hash,
                    text: text.to_owned(),
                })
            }
            _ => Err(
                "unsupported hash (expected $7$, $6$ or $argon2id$; plain-text passwords \
                      are not accepted, hash them with `hermod passwd`)"
                    .into(),
            ),
        }
    }

    fn text(&self) -> &str {
        match self {
            Hash::Pbkdf2Sha512 { text, .. } | Hash::Sha512 { text, .. } | Hash::Argon2 { text } => {
                text
            }
        }
    }

    fn verify(&self, password: &[u8]) -> bool {
        match self {
            Hash::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
                ..
            } => {
                let mut out = [0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, *iterations, &mut out);
                ct_eq(&out, hash)
            }
            Hash::Sha512 { salt, hash, .. } => {
                let mut d = Sha512::new();
                d.update(password);
                d.update(salt);
                ct_eq(&d.finalize(), hash)
            }
            Hash::Argon2 { text } => {
                PasswordHash::new(text).is_ok_and(|parsed| verify_argon2(&parsed, password))
            }
        }
    }
}

/// Verifies an argon2 PHC hash in this thread's reusable working memory.
///
/// The argon2 crate's own verifier allocates the working memory (m_cost KiB: 19 MiB by
/// default) for every check, 64-byte aligned, and glibc does not reuse such blocks: measured,
/// RSS grew by the whole 19 MiB on every check, even one thread checking in a loop. Here each
/// thread keeps one buffer (grown to the largest m_cost it has seen) and reuses it, so memory is
/// bounded by the number of threads that hash (the broker's hashing pool: a few) × m_cost.
fn verify_argon2(hash: &PasswordHash, password: &[u8]) -> bool {
    use argon2::{Algorithm, Block, Params, Version};
    thread_local! {
        static MEMORY: std::cell::RefCell<Vec<Block>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm.as_str()) else {
        return false;
    };
    let Ok(version) = hash
        .version
        .map_or(Ok(Version::default()), Version::try_from)
    else {
        return false;
    };
    let Ok(params) = Params::try_from(hash) else {
        return false;
    };
    let blocks = params.block_count();
    let ctx = Argon2::new(algorithm, version, params);
    let mut out = vec![0u8; expected.len()];
    let hashed = MEMORY.with(|memory| {
        let Ok(mut memory) = memory.try_borrow_mut() else {
            return false;
        };
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        memory.get_mut(..blocks).is_some_and(|m| {
            ctx.hash_password_into_with_memory(password, salt.as_ref(), &mut out, m)
                .is_ok()
        })
    });
    hashed && ct_eq(&out, expected.as_bytes())
}

/// Constant-time equality: time depends only on the lengths, never on where bytes differ.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn b64(s: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(s)
        .or_else(|_| STANDARD_NO_PAD.decode(s))
        .ok()
}

/// Hashes `password` as an argon2id PHC string with the argon2 crate's defaults (19 MiB,
/// 2 passes, 1 lane — the OWASP recommendation) and a random 16-byte salt.
pub fn hash_argon2id(password: &[u8]) -> Result<String, String> {
    Argon2::default()
        .hash_password(password)
        .map(|h| h.to_string())
        .map_err(|e| format!("argon2 hashing failed: {e}"))
}

/// Hashes `password` the way `mosquitto_passwd` 2.x does (`$7$101$...`), for files that must
/// stay readable by Mosquitto.
pub fn hash_mosquitto_pbkdf2(password: &[u8]) -> Result<String, String> {
    let random = argon2::password_hash::try_generate_salt()
        .map_err(|e| format!("cannot get random bytes: {e}"))?;
    let salt = random.get(..MOSQUITTO_SALT_LEN).ok_or("salt too short")?;
    Ok(pbkdf2_line(password, salt, MOSQUITTO_ITERATIONS))
}

fn pbkdf2_line(password: &[u8], salt: &[u8], iterations: u32) -> String {
    let mut out = [0u8; 64];
    pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
    format!(
        "$7${iterations}${}${}",
        STANDARD.encode(salt),
        STANDARD.encode(out)
    )
}

#[cfg(test)]
mod prop_tests;

#[cfg(test)]
mod tests {
    use super::*;

    /// Generated once with Debian's `mosquitto_passwd -b` (mosquitto 2.0.11):
    /// alice / "correct horse", bob / "hunter2".
    const MOSQUITTO_FIXTURE: &str = include_str!("testdata/mosquitto_passwd.txt");

    /// Cheap argon2id parameters so debug-build tests stay fast; verification reads the
    /// parameters from the PHC string, so this exercises the same code path.
    fn cheap_argon2(password: &[u8]) -> String {
        let params = argon2::Params::new(64, 1, 1, None).unwrap_or_default();
        Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password(password)
            .map(|h| h.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn mosquitto_fixture_verifies() {
        let f = PasswordFile::parse(MOSQUITTO_FIXTURE, "fixture").expect("parse");
        assert_eq!(f.len(), 2);
        assert!(f.verify("alice", b"correct horse"));
        assert!(f.verify("bob", b"hunter2"));
        assert!(!f.verify("alice", b"hunter2"));
        assert!(!f.verify("alice", b"correct horse "));
        assert!(!f.verify("carol", b"hunter2"));
    }

    #[test]
    fn live_mosquitto_passwd_line_verifies() {
        let bin = Path::new("/usr/bin/mosquitto_passwd");
        if !bin.exists() {
            eprintln!("skipping: mosquitto_passwd not installed (apt-get install mosquitto)");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pw");
        std::fs::write(&path, "").expect("create");
        let status = std::process::Command::new(bin)
            .arg("-b")
            .arg(&path)
            .arg("dave")
            .arg("s3cr:et pass")
            .status()
            .expect("run mosquitto_passwd");
        assert!(status.success());
        let f = PasswordFile::load(&path).expect("load");
        assert!(f.verify("dave", b"s3cr:et pass"));
        assert!(!f.verify("dave", b"s3cr:et"));
    }

    #[test]
    fn our_pbkdf2_matches_known_vector_and_roundtrips() {
        // Same salt and password as the fixture's alice line: must reproduce it exactly.
        let alice = MOSQUITTO_FIXTURE.lines().next().unwrap_or_default();
        let hash = alice.split_once(':').map(|(_, h)| h).unwrap_or_default();
        let salt_b64 = hash.split('$').nth(3).unwrap_or_default();
        let salt = STANDARD.decode(salt_b64).unwrap_or_default();
        assert_eq!(pbkdf2_line(b"correct horse", &salt, 101), hash);

        let line = hash_mosquitto_pbkdf2(b"pw").expect("hash");
        assert!(line.starts_with("$7$101$"));
        let f = PasswordFile::parse(&format!("u:{line}\n"), "t").expect("parse");
        assert!(f.verify("u", b"pw"));
        assert!(!f.verify("u", b"pW"));
    }

    #[test]
    fn legacy_sha512() {
        let salt = b"0123456789ab";
        let mut d = Sha512::new();
        d.update(b"old");
        d.update(salt);
        let line = format!(
            "legacy:$6${}${}",
            STANDARD.encode(salt),
            STANDARD.encode(d.finalize())
        );
        let f = PasswordFile::parse(&line, "t").expect("parse");
        assert!(f.verify("legacy", b"old"));
        assert!(!f.verify("legacy", b"new"));
    }

    #[test]
    fn argon2id_default_and_cheap() {
        let default_line = hash_argon2id(b"pw").expect("hash");
        assert!(
            default_line.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{default_line}"
        );
        let cheap = cheap_argon2(b"pw2");
        let text = format!("# users\n\na:{default_line}\nb:{cheap}\n");
        let f = PasswordFile::parse(&text, "t").expect("parse");
        assert!(f.verify("a", b"pw"));
        assert!(!f.verify("a", b"pw2"));
        assert!(f.verify("b", b"pw2"));
        assert!(!f.verify("nobody", b"pw"));
        assert_eq!(f.to_file_string(), text);
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = PasswordFile::parse("# c\nok:$argon2id$bad\n", "/etc/pw").expect_err("error");
        let msg = e.to_string();
        assert!(msg.contains("/etc/pw") && msg.contains(":2:"), "{msg}");
        let e = PasswordFile::parse("x:plaintext\n", "f").expect_err("error");
        assert!(e.to_string().contains("f:1:"));
        let e = PasswordFile::parse("nocolon\n", "f").expect_err("error");
        assert!(e.to_string().contains("f:1:"));
        let dup = format!("u:{0}\nu:{0}\n", cheap_argon2(b"x"));
        let e = PasswordFile::parse(&dup, "f").expect_err("error");
        assert!(e.to_string().contains("f:2:") && e.to_string().contains("duplicate"));
        let e = PasswordFile::load(Path::new("/nonexistent/pw")).expect_err("error");
        assert!(e.to_string().contains("/nonexistent/pw"));
    }

    /// Found while writing `prop_tests`: any argon2 parameters loaded, so a line could make each
    /// CONNECT for that user allocate up to 4 TiB, or never verify (m < 8p).
    #[test]
    fn argon2_memory_cost_is_bounded_at_load() {
        let line = |m: u32, p: u32| {
            format!("u:$argon2id$v=19$m={m},t=1,p={p}$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\n")
        };
        assert!(PasswordFile::parse(&line(19_456, 1), "f").is_ok());
        assert!(PasswordFile::parse(&line(MAX_ARGON2_M_COST, 1), "f").is_ok());
        let e = PasswordFile::parse(&line(MAX_ARGON2_M_COST + 1, 1), "f").expect_err("too big");
        assert!(
            e.to_string().contains("f:1:") && e.to_string().contains("1 GiB"),
            "{e}"
        );
        let e = PasswordFile::parse(&line(u32::MAX, 1), "f").expect_err("4 TiB");
        assert!(e.to_string().contains("memory cost"), "{e}");
        let e = PasswordFile::parse(&line(8, 2), "f").expect_err("m < 8p");
        assert!(e.to_string().contains("invalid argon2 parameters"), "{e}");
    }

    #[test]
    fn set_remove_keep_order_and_comments() {
        let mut f = PasswordFile::parse(MOSQUITTO_FIXTURE, "t").expect("parse");
        f.set("zed", &cheap_argon2(b"z")).expect("set");
        f.set("alice", &cheap_argon2(b"new")).expect("set");
        assert!(f.verify("alice", b"new"));
        assert!(f.remove("bob"));
        assert!(!f.remove("bob"));
        let out = f.to_file_string();
        let users: Vec<&str> = out.lines().filter_map(|l| l.split(':').next()).collect();
        assert_eq!(users, ["alice", "zed"]);
        assert!(f.set("a:b", &cheap_argon2(b"z")).is_err());
        assert!(f.set("c", "plain").is_err());
        assert!(!format!("{f:?}").contains("argon2"));
    }
}
