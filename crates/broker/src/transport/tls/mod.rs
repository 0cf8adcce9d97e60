//! TLS: building rustls server configurations (ring provider, TLS 1.3 and 1.2 only) and choosing
//! the ALPN protocol per connection, and the handshake. The files they are built from are loaded
//! and checked in `files`; the client certificate's identity is read in `identity`.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use tokio::net::TcpStream;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

use super::client_verifier::ClientVerifier;
use super::{FileProblem, TransportError, TransportSettings};
use files::{check_key_matches, load_cert_chain, load_crls, load_private_key, load_roots};
use identity::{ClientIdentity, client_identity};

mod files;
mod identity;

#[cfg(test)]
mod tests;

const ALPN_MQTT: &[u8] = b"mqtt";
const ALPN_HTTP11: &[u8] = b"http/1.1";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server configurations of one TLS listener, identical but for the ALPN protocol they
/// select. ALPN is chosen per connection from the ClientHello, so that "mqtt" is selected when
/// offered but never required: rustls refuses a client whose offered protocols miss all of the
/// configured ones (`no_application_protocol`), which would shut out clients offering e.g.
/// "x-amzn-mqtt-ca", and browsers on `wss` offering "http/1.1" / "h2".
pub(super) struct TlsConfigs {
    /// No ALPN protocol selected.
    plain: Arc<ServerConfig>,
    /// Selects "mqtt".
    mqtt: Arc<ServerConfig>,
    /// Selects "http/1.1" (for `wss`; "h2" is never selected: the upgrade is HTTP/1.1).
    http11: Arc<ServerConfig>,
}

impl TlsConfigs {
    /// Loads and checks every file named in `settings` (which must have passed `validate`).
    pub(super) fn load(settings: &TransportSettings) -> Result<Self, TransportError> {
        let provider = provider();
        let (certfile, keyfile) = match (&settings.certfile, &settings.keyfile) {
            (Some(c), Some(k)) => (c.as_path(), k.as_path()),
            _ => {
                return Err(TransportError::TlsConfig(
                    "certfile and keyfile are required".into(),
                ));
            }
        };
        let chain = load_cert_chain(certfile)?;
        let key = load_private_key(keyfile)?;
        check_key_matches(&chain, &key, keyfile, &provider)?;

        let verifier: Arc<dyn ClientCertVerifier> = match &settings.cafile {
            None => WebPkiClientVerifier::no_client_auth(),
            Some(cafile) => {
                let roots = load_roots(cafile)?;
                let crls = match &settings.crlfile {
                    Some(crlfile) => load_crls(crlfile, &roots.subjects)?,
                    None => Vec::new(),
                };
                let mut builder = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots.store),
                    provider.clone(),
                )
                // Mosquitto sets X509_V_FLAG_CRL_CHECK (leaf only), not CRL_CHECK_ALL; a leaf
                // whose issuer has no CRL in crlfile is refused (unknown status), as OpenSSL does.
                .with_crls(crls.clone())
                .only_check_end_entity_revocation();
                if !settings.require_certificate {
                    builder = builder.allow_unauthenticated();
                }
                let webpki = builder.build().map_err(|e| match (e, &settings.crlfile) {
                    (rustls::server::VerifierBuilderError::InvalidCrl(e), Some(crlfile)) => {
                        TransportError::file(
                            "crlfile",
                            crlfile,
                            FileProblem::BadCrl(format!("{e:?}")),
                        )
                    }
                    (e, _) => TransportError::TlsConfig(e.to_string()),
                })?;
                // webpki refuses X.509 v1 client certificates; OpenSSL (Mosquitto) accepts them.
                Arc::new(ClientVerifier::new(
                    webpki,
                    &roots.certs,
                    &crls,
                    provider.signature_verification_algorithms,
                ))
            }
        };

        let base = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TransportError::TlsConfig(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| TransportError::TlsConfig(e.to_string()))?;
        let with_alpn = |proto: &[u8]| {
            let mut c = base.clone();
            c.alpn_protocols = vec![proto.to_vec()];
            Arc::new(c)
        };
        Ok(TlsConfigs {
            mqtt: with_alpn(ALPN_MQTT),
            http11: with_alpn(ALPN_HTTP11),
            plain: Arc::new(base),
        })
    }

    /// Picks the configuration for this ClientHello's ALPN offer: "mqtt" for `tls` when offered,
    /// "http/1.1" for `wss` when offered, else none (ALPN is optional for MQTT).
    fn choose<'a>(
        &self,
        offered: Option<impl Iterator<Item = &'a [u8]>>,
        websocket: bool,
    ) -> Arc<ServerConfig> {
        let wanted = if websocket { ALPN_HTTP11 } else { ALPN_MQTT };
        let selected = offered.is_some_and(|mut protocols| protocols.any(|p| p == wanted));
        match (selected, websocket) {
            (false, _) => self.plain.clone(),
            (true, false) => self.mqtt.clone(),
            (true, true) => self.http11.clone(),
        }
    }

    /// The TLS handshake; returns the stream and the verified client certificate's names.
    pub(super) async fn accept(
        &self,
        tcp: TcpStream,
        websocket: bool,
    ) -> Result<(TlsStream<TcpStream>, ClientIdentity), TransportError> {
        let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp)
            .await
            .map_err(TransportError::TlsHandshake)?;
        let config = self.choose(start.client_hello().alpn(), websocket);
        let stream = start
            .into_stream(config)
            .await
            .map_err(TransportError::TlsHandshake)?;
        let identity = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|leaf| client_identity(leaf.as_ref()))
            .unwrap_or_default();
        Ok((stream, identity))
    }
}
