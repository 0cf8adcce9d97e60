//! The encodings behind the names things get in NATS (bucket keys, consumer and queue group
//! names): one of each, so that every node, and every version, derives the same names.

use std::fmt::Write as _;

use base64::Engine as _;
use sha2::Digest as _;

/// Unpadded base64url (`A-Z a-z 0-9 - _`): fits NATS subjects and KV keys whatever the input.
pub(super) fn base64url(data: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// Lowercase hex of the first `len` bytes (at most 32) of SHA-256 over `parts`, one after the
/// other.
pub(super) fn sha256_hex(parts: &[&[u8]], len: usize) -> String {
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p);
    }
    let digest = h.finalize();
    let mut s = String::with_capacity(2 * len);
    for b in digest.iter().take(len) {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A client id as a key or subject token: base64url, or for a long one (a client id may be
/// 65,535 bytes; NATS keeps a subject within its 4 KB control line) `h` and its SHA-256.
pub(crate) fn client_key(client_id: &str) -> String {
    if client_id.len() <= 512 {
        base64url(client_id)
    } else {
        format!("h{}", sha256_hex(&[client_id.as_bytes()], 32))
    }
}

#[cfg(test)]
mod tests {
    use super::super::wills::will_key;
    use super::super::{group_name, retained_key};
    use super::{base64url, sha256_hex};

    // Outputs of the functions as they were before they shared these helpers: a change here
    // renames keys and consumers that live on in NATS (retained messages, wills, groups).

    #[test]
    fn long_client_ids_are_hashed() {
        assert_eq!(super::client_key("dev-1"), base64url("dev-1"));
        let long = "x".repeat(60_000);
        let k = super::client_key(&long);
        assert!(k.starts_with('h') && k.len() == 65, "{k}");
        assert_ne!(k, super::client_key(&"x".repeat(60_001)));
    }

    #[test]
    fn retained_keys_are_pinned() {
        assert_eq!(retained_key("a/b"), "YS9i");
        assert_eq!(
            retained_key("sensors/kitchen/temp"),
            "c2Vuc29ycy9raXRjaGVuL3RlbXA"
        );
        // URL-safe alphabet (`-`, `_`), no padding.
        assert_eq!(retained_key("~~~?>>>/é"), "fn5-Pz4-Pi_DqQ");
        // Up to 1024 bytes: base64url; beyond: `h` + SHA-256 hex.
        assert_eq!(retained_key(&"y".repeat(1024)).len(), 1366);
        assert_eq!(
            retained_key(&"x".repeat(1025)),
            "hc6d8e9905300876046729949cc95c2385221270d389176f7234fe7ac00c4e430"
        );
    }

    #[test]
    fn will_keys_are_pinned() {
        assert_eq!(will_key("b1", "client-1"), "b1.Y2xpZW50LTE");
        assert_eq!(will_key("n-2", "~?>é"), "n-2.fj8-w6k");
    }

    #[test]
    fn group_names_are_pinned() {
        assert_eq!(group_name("g", "a/+"), "hs_d66bb1808b03ea10");
        assert_eq!(group_name("workers", "jobs/#"), "hs_9b1e43f6ad818d1c");
    }

    #[test]
    fn helpers() {
        assert_eq!(base64url(""), "");
        assert_eq!(base64url([0xfb, 0xff]), "-_8");
        // SHA-256 of "abc" (FIPS 180-2), whole and cut; parts are hashed as one input.
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_hex(&[b"abc"], 32), abc);
        assert_eq!(sha256_hex(&[b"a", b"", b"bc"], 8), &abc[..16]);
    }
}
