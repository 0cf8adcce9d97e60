//! The verified client certificate's names: subject CN, and the identity used as username.

/// The client certificate's names.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(in crate::transport) struct ClientIdentity {
    pub(in crate::transport) cn: Option<String>,
    pub(in crate::transport) identity: Option<String>,
}

/// The subject CN (first one, as Mosquitto's `X509_NAME_get_index_by_NID(.., NID_commonName, -1)`)
/// and the identity used as username: the CN, else the first DNS or e-mail SAN.
pub(super) fn client_identity(der: &[u8]) -> ClientIdentity {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return ClientIdentity::default();
    };
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let san = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .and_then(|ext| {
            ext.value.general_names.iter().find_map(|name| match name {
                x509_parser::extensions::GeneralName::DNSName(s)
                | x509_parser::extensions::GeneralName::RFC822Name(s)
                    if !s.is_empty() =>
                {
                    Some((*s).to_owned())
                }
                _ => None,
            })
        });
    ClientIdentity {
        identity: cn.clone().or(san),
        cn,
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::test_pki::Pki;

    #[test]
    fn identity_falls_back_to_san_without_cn() {
        let pki = Pki::new();
        let id = client_identity(pki.san_only_client.cert_der.as_ref());
        assert_eq!(id.cn, None);
        assert_eq!(id.identity.as_deref(), Some("sensor.example.com"));
        let id = client_identity(pki.client.cert_der.as_ref());
        assert_eq!(id.cn.as_deref(), Some("device-42"));
        assert_eq!(client_identity(b"garbage"), ClientIdentity::default());
    }
}
