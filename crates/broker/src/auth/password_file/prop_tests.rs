//! Randomised tests of the password file parser: generated files (comments, blank lines, CRLF,
//! whitespace, `$7$`, `$6$` and argon2 PHC lines) load with every user and write back unchanged;
//! mutated files load or fail with an error naming the file and a line that exists. No password
//! is verified here (the hashes are random); parsing alone must be safe.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

use super::{MAX_ARGON2_M_COST, PasswordFile};
use crate::auth::AuthFileError;
use crate::fuzz_support::{fuzz_config, mutated_text};

const ORIGIN: &str = "/etc/hermod/passwd";

fn hash_line() -> impl Strategy<Value = String> {
    let b64 = |pad: bool| {
        move |b: Vec<u8>| {
            if pad {
                STANDARD.encode(b)
            } else {
                STANDARD_NO_PAD.encode(b)
            }
        }
    };
    prop_oneof![
        // mosquitto_passwd 2.x: PBKDF2-SHA512, any iteration count, 64-byte hash.
        (
            1u32..100_000,
            vec(any::<u8>(), 1..20),
            vec(any::<u8>(), 64),
            any::<bool>()
        )
            .prop_map(move |(i, salt, hash, pad)| format!(
                "$7${i}${}${}",
                b64(pad)(salt),
                b64(pad)(hash)
            )),
        // mosquitto 1.x: SHA-512.
        (vec(any::<u8>(), 1..20), vec(any::<u8>(), 64)).prop_map(move |(salt, hash)| format!(
            "$6${}${}",
            b64(true)(salt),
            b64(true)(hash)
        )),
        // argon2id / argon2i / argon2d PHC strings with valid parameters.
        (
            prop_oneof![Just("argon2id"), Just("argon2i"), Just("argon2d")],
            1u32..4,
            1u32..8,
            0u32..4096,
            vec(any::<u8>(), 8..24),
            vec(any::<u8>(), 16..40),
        )
            .prop_map(move |(alg, p, t, extra_m, salt, hash)| {
                let m = 8 * p + extra_m;
                format!(
                    "${alg}$v=19$m={m},t={t},p={p}${}${}",
                    b64(false)(salt),
                    b64(false)(hash)
                )
            }),
    ]
}

/// A generated file: its text and its users in order.
fn file() -> impl Strategy<Value = (String, Vec<String>)> {
    let users = btree_map(
        "[A-Za-z0-9_.@-][A-Za-z0-9_.@# -]{0,10}[A-Za-z0-9_.@-]",
        hash_line(),
        0..6,
    );
    let noise = vec(
        prop_oneof![Just(String::new()), "# [ -~]{0,20}", "[ \t]{1,3}"],
        0..6,
    );
    (users, noise, any::<bool>()).prop_map(|(users, noise, crlf)| {
        let mut lines: Vec<String> = users.iter().map(|(u, h)| format!("{u}:{h}")).collect();
        for (i, n) in noise.into_iter().enumerate() {
            let at = (i * 7) % (lines.len() + 1);
            lines.insert(at, n);
        }
        let eol = if crlf { "\r\n" } else { "\n" };
        let text: String = lines.iter().map(|l| format!("{l}{eol}")).collect();
        (text, users.into_keys().collect())
    })
}

fn check_error(e: &AuthFileError, text: &str) -> Result<(), TestCaseError> {
    match e {
        AuthFileError::Syntax { origin, line, .. } => {
            prop_assert_eq!(origin, ORIGIN);
            prop_assert!(*line >= 1 && *line <= text.lines().count(), "line {}", line);
            let prefix = format!("{ORIGIN}:{line}: ");
            prop_assert!(e.to_string().starts_with(&prefix), "{}", e);
        }
        AuthFileError::Io { .. } => return Err(TestCaseError::fail("Io error from parse")),
    }
    Ok(())
}

proptest! {
    #![proptest_config(fuzz_config(1000, 0x4845_524D_4F44_0301))]

    /// Generated files load with exactly their users, and write back as they were (CRLF
    /// becomes LF; comments and blank lines are kept).
    #[test]
    fn generated_files_load_and_round_trip((text, users) in file()) {
        let f = PasswordFile::parse(&text, ORIGIN).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(f.len(), users.len());
        for u in &users {
            prop_assert!(f.contains(u), "{} missing", u);
        }
        prop_assert_eq!(f.to_file_string(), text.replace("\r\n", "\n"));
        let again = PasswordFile::parse(&f.to_file_string(), ORIGIN)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(again.to_file_string(), f.to_file_string());
    }

    /// Mutated files: a file, or an error naming the file and an existing line. Whatever loads
    /// writes back to text that loads again to the same users.
    #[test]
    fn mutated_files_load_or_name_the_line(
        text in file().prop_flat_map(|(t, _)| mutated_text(t)),
    ) {
        match PasswordFile::parse(&text, ORIGIN) {
            Ok(f) => {
                let again = PasswordFile::parse(&f.to_file_string(), ORIGIN)
                    .map_err(|e| TestCaseError::fail(format!("written file does not load: {e}")))?;
                prop_assert_eq!(again.len(), f.len());
                // Same lines; only a stray CR ending a comment or blank line may go (a line
                // written back as "...\r\n" reads without it).
                let trimmed = |f: &PasswordFile| {
                    f.to_file_string().lines().map(|l| l.trim_end().to_owned()).collect::<Vec<_>>()
                };
                prop_assert_eq!(trimmed(&again), trimmed(&f));
            }
            Err(e) => check_error(&e, &text)?,
        }
    }

    /// Arbitrary argon2 parameters: a line loads only when the parameters are ones argon2 can
    /// run and its memory cost is at most the bound, so no line in the file can make each
    /// CONNECT allocate gigabytes.
    #[test]
    fn argon2_parameters_are_checked_at_load(
        m in prop_oneof![0u32..64, any::<u32>()],
        t in prop_oneof![0u32..4, any::<u32>()],
        p in prop_oneof![0u32..4, any::<u32>()],
    ) {
        let line = format!("u:$argon2id$v=19$m={m},t={t},p={p}$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\n");
        let valid = argon2::Params::new(m, t, p, None).is_ok();
        match PasswordFile::parse(&line, ORIGIN) {
            Ok(_) => prop_assert!(valid && m <= MAX_ARGON2_M_COST, "m={} t={} p={} loaded", m, t, p),
            Err(e) => {
                prop_assert!(!valid || m > MAX_ARGON2_M_COST, "m={} t={} p={}: {}", m, t, p, e);
                check_error(&e, &line)?;
            }
        }
    }
}
