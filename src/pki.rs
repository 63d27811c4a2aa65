//! Certificates for a network, made with rcgen: a CA, node certificates
//! whose Common Name is the node's MAC, certificate requests and signing.
//! Everything it writes is X.509 v3 and usable by invpn 0.4 too.

use std::fmt;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber, SignatureAlgorithm,
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
pub enum PkiError {
    /// rcgen could not make, read or sign something; `what` names the step.
    Rcgen {
        /// The step, such as `signing the request`.
        what: &'static str,
        /// rcgen's error.
        source: rcgen::Error,
    },
    /// The system's cryptographic random generator failed.
    Random,
    /// A node certificate or request asked for a MAC that is not unicast.
    NotUnicast(Mac),
    /// A certificate signing request that cannot be signed.
    Request(RequestError),
    /// A file of a CA directory could not be read.
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file of a CA directory holds no usable key or certificate.
    Unusable {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it (the parser's words).
        detail: String,
    },
    /// The CA directory's certificate is not a CA certificate.
    NotCa(std::path::PathBuf),
    /// The CA directory's key does not belong to its certificate.
    KeyMismatch {
        /// The key file.
        key: std::path::PathBuf,
        /// The certificate file.
        cert: std::path::PathBuf,
    },
    /// Not a serial number in hex (the text given).
    BadSerial(String),
    /// A revocation time outside what a CRL can hold (the serial revoked).
    BadRevocationTime(String),
    /// The CA certificate's keyUsage does not allow signing CRLs.
    CannotSignCrls,
}

/// What is wrong with a certificate signing request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// Not PEM (the parser's words).
    NotPem(String),
    /// PEM, but not a signing request (the parser's words).
    NotParsed(String),
    /// Its signature does not verify.
    BadSignature,
    /// It has no Common Name.
    NoCommonName,
    /// Its Common Name is not a MAC address.
    NotAMac(String),
    /// Its public key is of a kind rcgen cannot sign for (the reason).
    UnsupportedKey(String),
}

impl fmt::Display for PkiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PkiError::Rcgen { what, source } => write!(f, "{what}: {source}"),
            PkiError::Random => f.write_str("the system's random generator failed"),
            PkiError::NotUnicast(mac) => write!(f, "{mac} is not a unicast MAC: a node needs one"),
            PkiError::Request(r) => write!(f, "{r}"),
            PkiError::Read { path, source } => {
                write!(f, "{}: cannot read: {source}", path.display())
            }
            PkiError::Unusable { path, detail } => write!(f, "{}: {detail}", path.display()),
            PkiError::NotCa(path) => write!(
                f,
                "{}: not a CA certificate (basicConstraints CA:TRUE missing)",
                path.display()
            ),
            PkiError::KeyMismatch { key, cert } => write!(
                f,
                "{}: this key does not belong to the CA certificate {}",
                key.display(),
                cert.display()
            ),
            PkiError::BadSerial(s) => {
                write!(f, "{s:?} is not a serial number in hex (such as 4f:2a:01)")
            }
            PkiError::BadRevocationTime(serial) => {
                write!(f, "revocation time of {serial}: out of range")
            }
            PkiError::CannotSignCrls => f.write_str(
                "the CA certificate may not sign CRLs (its keyUsage lacks cRLSign): \
                 make a new CA, or add cRLSign with openssl",
            ),
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::NotPem(e) => write!(f, "not a PEM certificate signing request: {e}"),
            RequestError::NotParsed(e) => {
                write!(f, "not a valid certificate signing request: {e}")
            }
            RequestError::BadSignature => {
                f.write_str("the request's signature does not verify (corrupt or forged)")
            }
            RequestError::NoCommonName => f.write_str("the request has no Common Name"),
            RequestError::NotAMac(cn) => {
                write!(f, "the request's Common Name {cn:?} is not a MAC address")
            }
            RequestError::UnsupportedKey(e) => {
                write!(f, "the request's public key is not supported: {e}")
            }
        }
    }
}

impl std::error::Error for PkiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PkiError::Rcgen { source, .. } => Some(source),
            PkiError::Read { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn err(what: &'static str) -> impl Fn(rcgen::Error) -> PkiError {
    move |source| PkiError::Rcgen { what, source }
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

/// Fills `b` from the system's cryptographic random generator.
fn random_bytes(b: &mut [u8]) -> Result<(), PkiError> {
    use ring::rand::SecureRandom;
    ring::rand::SystemRandom::new().fill(b).map_err(|_| PkiError::Random)
}

/// A random serial number (RFC 5280: positive, at most 20 octets; 127 bits
/// of randomness from the system's cryptographic generator, so that serials
/// cannot be predicted or collide).
fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut b = [0u8; 16];
    random_bytes(&mut b)?;
    b[0] &= 0x7f; // positive
    b[0] |= 0x01; // and no leading zero byte
    Ok(SerialNumber::from_slice(&b))
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
    p.serial_number = Some(random_serial()?);
    let cert = p.self_signed(&kp).map_err(err("signing the CA certificate"))?;
    Ok(CertAndKey { cert_pem: cert.pem(), key_pem: kp.serialize_pem() })
}

/// The parameters of a node certificate for the given Common Name (the
/// MAC, written in lower case, except in tests that need a bad CN).
fn node_params(common_name: &str, validity: Validity) -> Result<CertificateParams, PkiError> {
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
    p.serial_number = Some(random_serial()?);
    Ok(p)
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
    let cert = node_params(common_name, validity)?
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
        return Err(PkiError::NotUnicast(mac));
    }
    issue(ca, &mac.to_string(), validity, key)
}

/// A new key and a certificate signing request for `mac` (the key stays on
/// the node; the request goes to the CA). Returns (request PEM, key PEM).
pub fn new_request(mac: Mac, key: KeyType) -> Result<(String, String), PkiError> {
    if !mac.is_node_address() {
        return Err(PkiError::NotUnicast(mac));
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
/// openssl) as a node certificate: its signature must verify and its CN
/// must be a MAC. Whatever else the request asks for (extensions included)
/// is replaced by invpnd's node profile: X.509 v3, CA:FALSE, TLS client and
/// server use. Returns the certificate PEM and the MAC.
pub fn sign_request(
    ca: &CertAndKey,
    csr_pem: &str,
    validity: Validity,
) -> Result<(String, Mac), PkiError> {
    use rustls_pki_types::pem::PemObject;
    use x509_parser::prelude::FromDer;
    let der = rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
        .map_err(|e| PkiError::Request(RequestError::NotPem(e.to_string())))?;
    let (_, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(der.as_ref())
            .map_err(|e| PkiError::Request(RequestError::NotParsed(e.to_string())))?;
    csr.verify_signature().map_err(|_| PkiError::Request(RequestError::BadSignature))?;
    let info = &csr.certification_request_info;
    let cn = info
        .subject
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .ok_or(PkiError::Request(RequestError::NoCommonName))?;
    let mac: Mac =
        cn.parse().map_err(|_| PkiError::Request(RequestError::NotAMac(cn.to_string())))?;
    if !mac.is_node_address() {
        return Err(PkiError::NotUnicast(mac));
    }
    let key = rcgen::SubjectPublicKeyInfo::from_der(info.subject_pki.raw)
        .map_err(|e| PkiError::Request(RequestError::UnsupportedKey(e.to_string())))?;
    let cert = node_params(&mac.to_string(), validity)?
        .signed_by(&key, &issuer(ca)?)
        .map_err(err("signing the request"))?;
    Ok((cert.pem(), mac))
}

/// Reads a CA from `dir/ca.crt` and `dir/ca.key`. The key may be PKCS#8
/// (invpnctl, modern openssl), PKCS#1 RSA or SEC1 EC (older openssl, as
/// 0.4's instructions made them).
pub fn load_ca(dir: &std::path::Path) -> Result<CertAndKey, PkiError> {
    use rustls_pki_types::pem::PemObject;
    let (crt, key) = (dir.join("ca.crt"), dir.join("ca.key"));
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path)
            .map_err(|source| PkiError::Read { path: path.to_path_buf(), source })
    };
    let unusable = |path: &std::path::Path, detail: String| PkiError::Unusable {
        path: path.to_path_buf(),
        detail,
    };
    let cert_pem = read(&crt)?;
    let key_pem = to_pkcs8_pem(&read(&key)?).map_err(|e| unusable(&key, e))?;
    let cert_der = rustls_pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| unusable(&crt, format!("no certificate: {e}")))?;
    let info = crate::tls::CertInfo::from_der(&cert_der).map_err(|e| unusable(&crt, e))?;
    if !info.is_ca {
        return Err(PkiError::NotCa(crt));
    }
    let ck = CertAndKey { cert_pem, key_pem };
    issuer(&ck).map_err(|e| unusable(dir, e.to_string()))?;
    // The key must be the one the CA certificate was made for, or every
    // certificate signed with it fails to verify.
    let kp = KeyPair::from_pem(&ck.key_pem).map_err(err("reading the CA key"))?;
    let spki = {
        use x509_parser::prelude::FromDer;
        x509_parser::certificate::X509Certificate::from_der(cert_der.as_ref())
            .map(|(_, c)| c.public_key().raw.to_vec())
            .map_err(|e| unusable(&crt, e.to_string()))?
    };
    if rcgen::PublicKeyData::subject_public_key_info(&kp) != spki {
        return Err(PkiError::KeyMismatch { key, cert: crt });
    }
    Ok(ck)
}

/// Converts a PEM private key to PKCS#8 PEM (what ring, and so rcgen, reads).
pub fn to_pkcs8_pem(pem: &str) -> Result<String, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::PrivateKeyDer;
    let key = PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| format!("no private key found (PKCS#8, PKCS#1 or SEC1 PEM): {e}"))?;
    let der = match &key {
        PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
        PrivateKeyDer::Pkcs1(k) => {
            pkcs8_wrap(&der_seq(&[&der_oid(OID_RSA), &[0x05, 0x00]]), k.secret_pkcs1_der())
        }
        PrivateKeyDer::Sec1(k) => {
            let curve = sec1_curve(k.secret_sec1_der()).ok_or("SEC1 key without a named curve")?;
            pkcs8_wrap(&der_seq(&[&der_oid(OID_EC), &curve]), k.secret_sec1_der())
        }
        _ => return Err("unsupported private key format".into()),
    };
    let b64 = base64_encode(&der);
    let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END PRIVATE KEY-----\n");
    Ok(out)
}

const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

fn der_len(n: usize) -> Vec<u8> {
    match n {
        0..=0x7f => vec![n as u8],
        0x80..=0xff => vec![0x81, n as u8],
        0x100..=0xffff => vec![0x82, (n >> 8) as u8, n as u8],
        _ => vec![0x83, (n >> 16) as u8, (n >> 8) as u8, n as u8],
    }
}

fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend(der_len(content.len()));
    v.extend_from_slice(content);
    v
}

fn der_seq(parts: &[&[u8]]) -> Vec<u8> {
    der_tlv(0x30, &parts.concat())
}

fn der_oid(oid: &[u8]) -> Vec<u8> {
    der_tlv(0x06, oid)
}

/// PrivateKeyInfo { version 0, algorithm, privateKey OCTET STRING }.
fn pkcs8_wrap(alg: &[u8], key: &[u8]) -> Vec<u8> {
    der_seq(&[&[0x02, 0x01, 0x00], alg, &der_tlv(0x04, key)])
}

/// Splits one DER TLV off `b`: (tag, value, rest).
fn der_take(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 3 || rest.len() < n {
            return None;
        }
        (rest[..n].iter().fold(0usize, |a, b| a << 8 | *b as usize), &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The named-curve OID (as a whole TLV) in the `[0]` field of a SEC1
/// ECPrivateKey.
fn sec1_curve(der: &[u8]) -> Option<Vec<u8>> {
    let (0x30, mut body, _) = der_take(der)? else { return None };
    while !body.is_empty() {
        let (tag, value, rest) = der_take(body)?;
        if tag == 0xa0 {
            return Some(value.to_vec());
        }
        body = rest;
    }
    None
}

fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A random locally-administered unicast MAC (`x2:...`, `x6:...`, ...).
/// (From the system's cryptographic generator: two nodes made on two hosts
/// must not draw the same sequence.)
pub fn random_mac() -> Result<Mac, PkiError> {
    let mut b = [0u8; 6];
    random_bytes(&mut b)?;
    b[0] = (b[0] & 0xfc) | 0x02;
    Ok(Mac(b))
}

/// One revoked certificate, as a CRL lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// The serial number: hex bytes separated by colons (as `cert show`
    /// prints it).
    pub serial: String,
    /// When it was revoked (Unix seconds).
    pub time: i64,
    /// Why, if said.
    pub reason: Option<rcgen::RevocationReason>,
    /// The certificate's subject, if known (kept for people, not in the CRL).
    pub subject: String,
}

/// Parses a serial number given as hex, with or without colons
/// (`01:a2:...`, `01a2...`, `0x01a2`), into its bytes.
pub fn parse_serial(s: &str) -> Result<Vec<u8>, PkiError> {
    let hex: String = s.trim().trim_start_matches("0x").chars().filter(|c| *c != ':').collect();
    let bad = || PkiError::BadSerial(s.to_string());
    if hex.is_empty() || hex.len() > 40 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let padded = if hex.len() % 2 == 1 { format!("0{hex}") } else { hex };
    (0..padded.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&padded[i..i + 2], 16).map_err(|_| bad()))
        .collect()
}

/// Signs a CRL of `ca` listing `revoked`, numbered `number`, issued at
/// `this_update` and due to be replaced by `next_update`. Returns the PEM.
pub fn sign_crl(
    ca: &CertAndKey,
    revoked: &[Revoked],
    number: u64,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
) -> Result<String, PkiError> {
    let revoked_certs = revoked
        .iter()
        .map(|r| {
            Ok(rcgen::RevokedCertParams {
                serial_number: SerialNumber::from_slice(&parse_serial(&r.serial)?),
                revocation_time: OffsetDateTime::from_unix_timestamp(r.time)
                    .map_err(|_| PkiError::BadRevocationTime(r.serial.clone()))?,
                reason_code: r.reason,
                invalidity_date: None,
            })
        })
        .collect::<Result<Vec<_>, PkiError>>()?;
    let params = rcgen::CertificateRevocationListParams {
        this_update,
        next_update,
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: ca_key_id(ca)
            .map_or(rcgen::KeyIdMethod::Sha256, rcgen::KeyIdMethod::PreSpecified),
    };
    let crl = params.signed_by(&issuer(ca)?).map_err(|e| match e {
        rcgen::Error::IssuerNotCrlSigner => PkiError::CannotSignCrls,
        source => PkiError::Rcgen { what: "signing the CRL", source },
    })?;
    crl.pem().map_err(err("encoding the CRL"))
}

/// The CA certificate's subjectKeyIdentifier, which a CRL's
/// authorityKeyIdentifier must repeat (OpenSSL matches them).
fn ca_key_id(ca: &CertAndKey) -> Option<Vec<u8>> {
    use rustls_pki_types::pem::PemObject;
    use x509_parser::extensions::ParsedExtension;
    use x509_parser::prelude::FromDer;
    let der = rustls_pki_types::CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).ok()?;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der.as_ref()).ok()?;
    let id = cert.iter_extensions().find_map(|e| match e.parsed_extension() {
        ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
        _ => None,
    });
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_what_is_wrong_by_kind() {
        assert!(matches!(parse_serial("zz"), Err(PkiError::BadSerial(s)) if s == "zz"));
        assert!(matches!(
            sign_request(
                &new_ca("t", Validity::days_from_now(1), KeyType::EcdsaP256).unwrap(),
                "junk",
                Validity::days_from_now(1)
            ),
            Err(PkiError::Request(RequestError::NotPem(_)))
        ));
        let multicast = Mac([0x01, 0, 0, 0, 0, 1]);
        let e = new_request(multicast, KeyType::EcdsaP256).unwrap_err();
        assert!(matches!(e, PkiError::NotUnicast(m) if m == multicast));
        assert_eq!(e.to_string(), "01:00:00:00:00:01 is not a unicast MAC: a node needs one");

        // a CA directory whose certificate is a node's
        let dir = std::env::temp_dir().join(format!("invpn-pki-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = new_ca("t", Validity::days_from_now(1), KeyType::EcdsaP256).unwrap();
        let node =
            new_node(&ca, Mac([2, 0, 0, 0, 0, 1]), Validity::days_from_now(1), KeyType::EcdsaP256)
                .unwrap();
        std::fs::write(dir.join("ca.crt"), &node.cert_pem).unwrap();
        std::fs::write(dir.join("ca.key"), &node.key_pem).unwrap();
        let e = load_ca(&dir).unwrap_err();
        assert!(matches!(&e, PkiError::NotCa(p) if p.ends_with("ca.crt")), "{e}");
        std::fs::remove_file(dir.join("ca.crt")).unwrap();
        assert!(matches!(load_ca(&dir), Err(PkiError::Read { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
