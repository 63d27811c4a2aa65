//! What invpnd reads out of an X.509 certificate with x509-parser: the MAC
//! in the Common Name, the version, the validity period, the key type.

use x509_parser::prelude::*;

use crate::core::Mac;

/// The facts of one certificate that invpnd cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The subject's first Common Name, if any.
    pub common_name: Option<String>,
    /// The issuer, as text.
    pub issuer: String,
    /// The subject, as text.
    pub subject: String,
    /// 1 or 3 (webpki refuses anything but 3).
    pub version: u32,
    /// Validity start, seconds since the Unix epoch.
    pub not_before: i64,
    /// Validity end, seconds since the Unix epoch.
    pub not_after: i64,
    /// Whether basicConstraints says CA:TRUE.
    pub is_ca: bool,
    /// The public key type and size, e.g. "RSA 4096", "ECDSA P-256", "Ed25519".
    pub key_type: String,
    /// What an extendedKeyUsage extension allows, `None` without one
    /// (which allows everything).
    pub eku: Option<Eku>,
}

/// The TLS purposes an extendedKeyUsage extension names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eku {
    /// clientAuth (or anyExtendedKeyUsage): the node may dial.
    pub client: bool,
    /// serverAuth (or anyExtendedKeyUsage): the node may be dialled.
    pub server: bool,
}

impl CertInfo {
    /// Parses a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<CertInfo, String> {
        let (rest, cert) = X509Certificate::from_der(der)
            .map_err(|e| format!("not a valid X.509 certificate ({e})"))?;
        if !rest.is_empty() {
            return Err("trailing bytes after the certificate".into());
        }
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string);
        let validity = cert.validity();
        Ok(CertInfo {
            common_name,
            issuer: cert.issuer().to_string(),
            subject: cert.subject().to_string(),
            version: cert.version().0 + 1,
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
            is_ca: cert.is_ca(),
            key_type: key_type(cert.public_key()),
            eku: match cert.extended_key_usage() {
                Ok(Some(e)) => Some(Eku {
                    client: e.value.client_auth || e.value.any,
                    server: e.value.server_auth || e.value.any,
                }),
                Ok(None) => None,
                Err(e) => return Err(format!("bad extendedKeyUsage extension ({e})")),
            },
        })
    }

    /// The node MAC in the Common Name, or why there is none.
    pub fn mac(&self) -> Result<Mac, String> {
        let cn = self.common_name.as_deref().ok_or("the certificate has no Common Name")?;
        let mac: Mac = cn
            .parse()
            .map_err(|_| format!("the certificate's Common Name {cn:?} is not a MAC address"))?;
        if !mac.is_node_address() {
            return Err(format!("the certificate's Common Name {cn} is not a unicast MAC"));
        }
        Ok(mac)
    }

    /// Why links would fail in one direction, if the extendedKeyUsage lacks
    /// clientAuth or serverAuth (a link's dialler is the TLS client).
    pub fn eku_problem(&self) -> Option<String> {
        let e = self.eku?;
        let missing = match (e.client, e.server) {
            (true, true) => return None,
            (false, true) => "clientAuth: peers refuse it when this node dials them",
            (true, false) => "serverAuth: peers refuse it when they dial this node",
            (false, false) => "clientAuth and serverAuth: peers refuse it both ways",
        };
        Some(format!(
            "the certificate's extendedKeyUsage lacks {missing}, so links would fail \
             (re-issue it with extendedKeyUsage=serverAuth,clientAuth, or without the extension)"
        ))
    }

    /// Whole days from `now` (Unix seconds) until the certificate expires;
    /// negative once it has.
    pub fn days_left(&self, now: i64) -> i64 {
        (self.not_after - now).div_euclid(86_400)
    }
}

/// The type and size of a public key, e.g. "RSA 4096", "ECDSA P-256", "Ed25519".
pub fn key_type(spki: &SubjectPublicKeyInfo<'_>) -> String {
    use x509_parser::public_key::PublicKey;
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => format!("RSA {}", rsa.key_size()),
        Ok(PublicKey::EC(_)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| match oid.to_id_string().as_str() {
                    "1.2.840.10045.3.1.7" => "P-256".to_string(),
                    "1.3.132.0.34" => "P-384".to_string(),
                    "1.3.132.0.35" => "P-521".to_string(),
                    other => other.to_string(),
                })
                .unwrap_or_else(|| "unknown curve".into());
            format!("ECDSA {curve}")
        }
        _ => match spki.algorithm.algorithm.to_id_string().as_str() {
            "1.3.101.112" => "Ed25519".into(),
            "1.3.101.113" => "Ed448".into(),
            other => format!("unknown ({other})"),
        },
    }
}

pub use crate::core::expiry::unix_to_text;
