//! Certificates for a network, made with rcgen: a CA, node certificates
//! whose Common Name is the node's MAC, certificate requests and signing.
//! Everything it writes is X.509 v3 and usable by invpn 0.4 too.

use std::fmt;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
    SignatureAlgorithm,
};
use time::{Duration, OffsetDateTime};

use crate::core::Mac;

/// Key algorithms invpnctl can generate (ring cannot generate RSA keys;
/// RSA keys made with openssl are accepted everywhere else).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyType {
    /// ECDSA on P-256 with SHA-256: the default.
    #[default]
    EcdsaP256,
    /// ECDSA on P-384 with SHA-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
}

impl KeyType {
    fn alg(self) -> &'static SignatureAlgorithm {
        match self {
            KeyType::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyType::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyType::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }

    /// Parses `p256`, `p384` or `ed25519`.
    pub fn parse(s: &str) -> Option<KeyType> {
        match s.to_ascii_lowercase().as_str() {
            "p256" | "ecdsa" | "ecdsa-p256" => Some(KeyType::EcdsaP256),
            "p384" | "ecdsa-p384" => Some(KeyType::EcdsaP384),
            "ed25519" => Some(KeyType::Ed25519),
            _ => None,
        }
    }
}

/// A certificate and its private key, PEM encoded.
#[derive(Clone, PartialEq, Eq)]
pub struct CertAndKey {
    pub cert_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for CertAndKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertAndKey").field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

/// Why a certificate operation failed.
#[derive(Debug)]
pub struct PkiError(pub String);

impl fmt::Display for PkiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PkiError {}

fn err(what: &str) -> impl Fn(rcgen::Error) -> PkiError + '_ {
    move |e| PkiError(format!("{what}: {e}"))
}

/// The validity period of a new certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From an hour ago (for clocks a little behind) for `days` days.
    pub fn days_from_now(days: u32) -> Validity {
        let now = OffsetDateTime::now_utc();
        Validity {
            not_before: now - Duration::hours(1),
            not_after: now + Duration::days(i64::from(days)),
        }
    }
}

fn random_serial() -> SerialNumber {
    let mut b = [0u8; 16];
    fastrand::fill(&mut b);
    b[0] &= 0x7f; // positive
    b[0] |= 0x01; // and no leading zero byte
    SerialNumber::from_slice(&b)
}

/// Makes a self-signed CA.
pub fn new_ca(name: &str, validity: Validity, key: KeyType) -> Result<CertAndKey, PkiError> {
    let kp = KeyPair::generate_for(key.alg()).map_err(err("generating the CA key"))?;
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = validity.not_before;
    p.not_after = validity.not_after;
    p.serial_number = Some(random_serial());
    let cert = p.self_signed(&kp).map_err(err("signing the CA certificate"))?;
    Ok(CertAndKey { cert_pem: cert.pem(), key_pem: kp.serialize_pem() })
}

/// The parameters of a node certificate for the given Common Name (the
/// MAC, written in lower case, except in tests that need a bad CN).
fn node_params(common_name: &str, validity: Validity) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, common_name);
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    p.extended_key_usages =
        vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    p.use_authority_key_identifier_extension = true;
    p.not_before = validity.not_before;
    p.not_after = validity.not_after;
    p.serial_number = Some(random_serial());
    p
}

fn issuer<'a>(ca: &'a CertAndKey) -> Result<Issuer<'a, KeyPair>, PkiError> {
    let key = KeyPair::from_pem(&ca.key_pem).map_err(err("reading the CA key"))?;
    Issuer::from_ca_cert_pem(&ca.cert_pem, key).map_err(err("reading the CA certificate"))
}

/// Issues a node certificate with a new key, with `common_name` as CN
/// (normally the MAC: see [`new_node`]).
pub fn issue(
    ca: &CertAndKey,
    common_name: &str,
    validity: Validity,
    key: KeyType,
) -> Result<CertAndKey, PkiError> {
    let kp = KeyPair::generate_for(key.alg()).map_err(err("generating the node key"))?;
    let cert = node_params(common_name, validity)
        .signed_by(&kp, &issuer(ca)?)
        .map_err(err("signing the node certificate"))?;
    Ok(CertAndKey { cert_pem: cert.pem(), key_pem: kp.serialize_pem() })
}

/// Issues the certificate of the node whose MAC is `mac`.
pub fn new_node(
    ca: &CertAndKey,
    mac: Mac,
    validity: Validity,
    key: KeyType,
) -> Result<CertAndKey, PkiError> {
    if !mac.is_node_address() {
        return Err(PkiError(format!("{mac} is not a unicast MAC: a node needs one")));
    }
    issue(ca, &mac.to_string(), validity, key)
}

/// A new key and a certificate signing request for `mac` (the key stays on
/// the node; the request goes to the CA). Returns (request PEM, key PEM).
pub fn new_request(mac: Mac, key: KeyType) -> Result<(String, String), PkiError> {
    if !mac.is_node_address() {
        return Err(PkiError(format!("{mac} is not a unicast MAC: a node needs one")));
    }
    let kp = KeyPair::generate_for(key.alg()).map_err(err("generating the node key"))?;
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, mac.to_string());
    let csr = p.serialize_request(&kp).map_err(err("making the request"))?;
    let pem = csr.pem().map_err(err("encoding the request"))?;
    Ok((pem, kp.serialize_pem()))
}

/// Signs a certificate signing request (from `invpnctl cert request` or
/// openssl) as a node certificate: its CN must be a MAC. Whatever else the
/// request asks for is replaced by invpnd's node profile (v3, CA:FALSE,
/// TLS client and server use). Returns the certificate PEM and the MAC.
pub fn sign_request(
    ca: &CertAndKey,
    csr_pem: &str,
    validity: Validity,
) -> Result<(String, Mac), PkiError> {
    let csr = CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|e| PkiError(format!("not a valid certificate signing request: {e}")))?;
    let cn = csr
        .params
        .distinguished_name
        .get(&DnType::CommonName)
        .and_then(|v| match v {
            rcgen::DnValue::PrintableString(s) => Some(s.to_string()),
            rcgen::DnValue::Utf8String(s) => Some(s.clone()),
            _ => None,
        })
        .ok_or_else(|| PkiError("the request has no Common Name".into()))?;
    let mac: Mac = cn
        .parse()
        .map_err(|_| PkiError(format!("the request's Common Name {cn:?} is not a MAC address")))?;
    if !mac.is_node_address() {
        return Err(PkiError(format!("the request's Common Name {mac} is not a unicast MAC")));
    }
    let cert = node_params(&mac.to_string(), validity)
        .signed_by(&csr.public_key, &issuer(ca)?)
        .map_err(err("signing the request"))?;
    Ok((cert.pem(), mac))
}

/// A random locally-administered unicast MAC (`x2:...`, `x6:...`, ...).
pub fn random_mac() -> Mac {
    let mut b = [0u8; 6];
    fastrand::fill(&mut b);
    b[0] = (b[0] & 0xfc) | 0x02;
    Mac(b)
}
