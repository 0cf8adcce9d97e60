//! The test PKI of hermod-testkit (a CA, a server certificate for localhost / 127.0.0.1, client
//! certificates: good, other CA, expired, revoked, SAN only; a CRL; a second CA with its own
//! server certificate, for reload tests) written to a temporary folder, and the transport
//! settings that use those files.

use std::path::PathBuf;

pub(crate) use hermod_testkit::{Leaf, client_config};

use super::{Transport, TransportSettings};

pub(crate) struct Pki {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) ca_pem: String,
    pub(crate) other_ca_pem: String,
    pub(crate) cert_path: PathBuf,
    pub(crate) key_path: PathBuf,
    pub(crate) ca_path: PathBuf,
    pub(crate) crl_path: PathBuf,
    other_cert_path: PathBuf,
    other_key_path: PathBuf,
    pub(crate) client: Leaf,
    pub(crate) foreign_client: Leaf,
    pub(crate) expired_client: Leaf,
    pub(crate) revoked_client: Leaf,
    pub(crate) san_only_client: Leaf,
}

impl Pki {
    pub(crate) fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let kit = hermod_testkit::Pki::new();
        let write = |name: &str, contents: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, contents).expect("write");
            path
        };
        Pki {
            cert_path: write("server.pem", &kit.server.cert_pem),
            key_path: write("server.key", &kit.server.key_pem),
            ca_path: write("ca.pem", &kit.ca_pem),
            crl_path: write("ca.crl", &kit.crl_pem),
            other_cert_path: write("other-server.pem", &kit.other_server.cert_pem),
            other_key_path: write("other-server.key", &kit.other_server.key_pem),
            dir,
            ca_pem: kit.ca_pem,
            other_ca_pem: kit.other_ca_pem,
            client: kit.client,
            foreign_client: kit.foreign,
            expired_client: kit.expired,
            revoked_client: kit.revoked,
            san_only_client: kit.san_only,
        }
    }

    pub(crate) fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("write");
        path
    }

    /// `tls` (or `wss` if `ws`) with the server certificate, no client certificates.
    pub(crate) fn tls_settings(&self, ws: bool) -> TransportSettings {
        TransportSettings {
            transport: if ws { Transport::Wss } else { Transport::Tls },
            certfile: Some(self.cert_path.clone()),
            keyfile: Some(self.key_path.clone()),
            ..Default::default()
        }
    }

    /// `tls` with cafile + crlfile; `require` sets require_certificate and
    /// use_identity_as_username.
    pub(crate) fn mtls_settings(&self, require: bool) -> TransportSettings {
        TransportSettings {
            cafile: Some(self.ca_path.clone()),
            crlfile: Some(self.crl_path.clone()),
            require_certificate: require,
            use_identity_as_username: require,
            ..self.tls_settings(false)
        }
    }

    /// `tls` with the server certificate of the other CA.
    pub(crate) fn second_server_settings(&self) -> TransportSettings {
        TransportSettings {
            certfile: Some(self.other_cert_path.clone()),
            keyfile: Some(self.other_key_path.clone()),
            ..self.tls_settings(false)
        }
    }
}
