//! Rejections: AWS's error document, `{"code", "message", "timestamp", "clientToken"?}`.
//!
//! The codes and messages are AWS IoT's own (its "Device Shadow error messages" list), since
//! SDK users match on them. 429 and 500 are never decided by the engine (it counts no
//! in-flight requests and does no I/O); they have constructors so the caller answers them in
//! the same shape, through [`crate::Engine::reject`].

use serde_json::{Map, Value, json};

/// Why a request was refused: one reply on `.../rejected`, and nothing stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// HTTP-like status code, as AWS uses: 400, 404, 409, 413, 415, 429 or 500.
    pub code: u16,
    pub message: String,
    /// The request's `clientToken`, echoed when the request had a valid one.
    pub client_token: Option<String>,
}

impl Rejection {
    pub fn new(code: u16, message: impl Into<String>) -> Rejection {
        Rejection {
            code,
            message: message.into(),
            client_token: None,
        }
    }

    /// 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> Rejection {
        Rejection::new(400, message)
    }

    /// 400 "Invalid JSON": the payload does not parse, or is not a JSON object.
    pub fn invalid_json() -> Rejection {
        Rejection::bad_request("Invalid JSON")
    }

    /// 404 for a get or delete of a shadow that does not exist (or was deleted). `name` is
    /// the shadow's name, or the thing's for the classic shadow, as AWS words it.
    pub fn not_found(name: &str) -> Rejection {
        Rejection::new(404, format!("No shadow exists with name: '{name}'"))
    }

    /// 409: the request's `version` is not the shadow's current version.
    pub fn version_conflict() -> Rejection {
        Rejection::new(409, "Version conflict")
    }

    /// 413: the request, or the document it would make, is over the size limit.
    pub fn payload_too_large() -> Rejection {
        Rejection::new(413, "The payload exceeds the maximum size allowed")
    }

    /// 415: the payload is not UTF-8.
    pub fn unsupported_encoding() -> Rejection {
        Rejection::new(
            415,
            "Unsupported documented encoding; supported encoding is UTF-8",
        )
    }

    /// 429: too many requests in flight; decided by the caller, which counts them.
    pub fn throttled() -> Rejection {
        Rejection::new(429, "Too Many Requests")
    }

    /// 500: the caller could not load or store the shadow.
    pub fn internal() -> Rejection {
        Rejection::new(500, "Internal service failure")
    }

    /// The same rejection, echoing `token`.
    pub fn with_client_token(mut self, token: Option<String>) -> Rejection {
        self.client_token = token;
        self
    }

    /// The error document published on `.../rejected`.
    pub fn to_payload(&self, now_secs: i64) -> Vec<u8> {
        let mut doc = Map::new();
        doc.insert("code".into(), json!(self.code));
        doc.insert("message".into(), json!(self.message));
        doc.insert("timestamp".into(), json!(now_secs));
        if let Some(token) = &self.client_token {
            doc.insert("clientToken".into(), json!(token));
        }
        Value::Object(doc).to_string().into_bytes()
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.message)
    }
}

impl std::error::Error for Rejection {}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(r: &Rejection) -> Value {
        serde_json::from_slice(&r.to_payload(42)).unwrap_or_default()
    }

    #[test]
    fn error_document_shape() {
        let doc = parsed(&Rejection::version_conflict());
        assert_eq!(
            doc,
            json!({"code": 409, "message": "Version conflict", "timestamp": 42})
        );
        let doc = parsed(&Rejection::not_found("lamp").with_client_token(Some("t-1".into())));
        assert_eq!(
            doc,
            json!({"code": 404, "message": "No shadow exists with name: 'lamp'",
                   "timestamp": 42, "clientToken": "t-1"})
        );
    }

    #[test]
    fn codes() {
        assert_eq!(Rejection::invalid_json().code, 400);
        assert_eq!(Rejection::payload_too_large().code, 413);
        assert_eq!(Rejection::unsupported_encoding().code, 415);
        assert_eq!(Rejection::throttled().code, 429);
        assert_eq!(Rejection::internal().code, 500);
        assert_eq!(
            Rejection::internal().to_string(),
            "500 Internal service failure"
        );
    }
}
