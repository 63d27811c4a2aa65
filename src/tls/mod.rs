//! TLS for links, with rustls and its ring provider: the node's key and
//! certificate, the CA that defines the network, and the client and server
//! configurations built from them (mutual authentication, ALPN `invpn/2`,
//! no SNI, no resumption).

pub mod cert_info;
pub mod crl;
pub mod verify;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::{ResolvesClientCert, Resumption};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, ClientConfig, RootCertStore, ServerConfig, SignatureScheme};

pub use cert_info::CertInfo;
pub use crl::Crls;
use verify::{NodeClientVerifier, NodeServerVerifier};

use crate::config::Ssl;
use crate::core::Mac;

/// The ALPN protocol invpnd offers; a link that agrees on it is an invpnd
/// link, one without ALPN is a 0.4 link (PROTOCOL.md §8).
pub const ALPN_INVPN2: &[u8] = b"invpn/2";
/// The ALPN protocol of a lane: a second connection between two invpnd
/// neighbours that already share a link, carrying the frames of sparse
/// flows (`core::lane`). Offered only by a dialler whose neighbour's hello
/// said it takes lanes.
pub const ALPN_LANE: &[u8] = b"invpn/2-lane";

/// Why the node's TLS material was refused.
#[derive(Debug)]
pub enum TlsError {
    /// A file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// The `[ssl]` setting that names it.
        setting: &'static str,
        /// Why not.
        err: std::io::Error,
    },
    /// A file holds no usable PEM block of the kind needed.
    Pem {
        /// The file.
        path: PathBuf,
        /// The `[ssl]` setting that names it.
        setting: &'static str,
        /// What is wrong.
        msg: String,
    },
    /// The key is not one rustls can sign with.
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// A certificate is unusable (CN not a MAC, X.509 v1, not a CA...).
    Cert {
        /// The file.
        path: PathBuf,
        /// The `[ssl]` setting that names it (`ca` or `cert`).
        setting: &'static str,
        /// What is wrong.
        msg: String,
    },
    /// The key is not the one the certificate was issued for.
    Mismatch {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
    },
    /// The node certificate does not verify against the CA.
    Chain {
        /// The certificate file.
        cert: PathBuf,
        /// The CA file.
        ca: PathBuf,
        /// Why it does not verify.
        msg: String,
    },
    /// A revocation list (`[ssl] crl`) is unusable.
    Crl {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// The CRL revokes this node's own certificate.
    Revoked {
        /// The certificate file.
        cert: PathBuf,
        /// The CRL file.
        crl: PathBuf,
    },
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Read { path, err, .. } => write!(f, "{}: cannot read: {err}", path.display()),
            TlsError::Pem { path, msg, .. }
            | TlsError::Key { path, msg }
            | TlsError::Cert { path, msg, .. }
            | TlsError::Crl { path, msg } => write!(f, "{}: {msg}", path.display()),
            TlsError::Mismatch { key, cert } => write!(
                f,
                "{}: this key does not belong to the certificate {}",
                key.display(),
                cert.display()
            ),
            TlsError::Chain { cert, ca, msg } => write!(
                f,
                "{}: does not verify against the CA in {}: {msg}",
                cert.display(),
                ca.display()
            ),
            TlsError::Revoked { cert, crl } => write!(
                f,
                "{}: this node's certificate is revoked by the CRL in {}: its peers refuse \
                 it; issue it a new certificate",
                cert.display(),
                crl.display()
            ),
        }
    }
}

impl std::error::Error for TlsError {}

impl TlsError {
    /// The `[ssl]` setting the error is about (`key`, `cert`, `ca` or
    /// `crl`), for an error that names its line in the configuration.
    pub fn setting(&self) -> &'static str {
        match self {
            TlsError::Read { setting, .. }
            | TlsError::Pem { setting, .. }
            | TlsError::Cert { setting, .. } => setting,
            TlsError::Key { .. } | TlsError::Mismatch { .. } => "key",
            TlsError::Chain { .. } => "cert",
            TlsError::Crl { .. } | TlsError::Revoked { .. } => "crl",
        }
    }
}

/// The crypto provider: ring, with its default suites and key exchanges.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A node's loaded and checked TLS material.
pub struct Material {
    /// The node's MAC (its certificate's CN).
    pub mac: Mac,
    /// Facts about the node certificate.
    pub cert: CertInfo,
    /// Facts about each CA certificate.
    pub cas: Vec<CertInfo>,
    /// The revocation lists of `[ssl] crl`, if set.
    pub crls: Option<Crls>,
    provider: Arc<CryptoProvider>,
    roots: Arc<RootCertStore>,
    certified: Arc<CertifiedKey>,
    /// Checks the nodes that connect (built once: it parses the CRLs).
    client_verifier: Arc<NodeClientVerifier>,
    /// The CRLs as webpki reads them, for the nodes we dial.
    revocation: Arc<[webpki::CertRevocationList<'static>]>,
}

impl fmt::Debug for Material {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Material").field("mac", &self.mac).field("cert", &self.cert).finish()
    }
}

/// Reads the file of `[ssl] setting`.
fn read(path: &Path, setting: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|err| TlsError::Read { path: path.to_path_buf(), setting, err })
}

fn certs(path: &Path, setting: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path, setting)?;
    let certs: Vec<_> =
        CertificateDer::pem_slice_iter(&pem).collect::<Result<_, _>>().map_err(|e| {
            TlsError::Pem { path: path.to_path_buf(), setting, msg: format!("bad PEM: {e}") }
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            setting,
            msg: "no certificate in this file (expected a PEM CERTIFICATE block)".into(),
        });
    }
    Ok(certs)
}

fn info(path: &Path, setting: &'static str, der: &[u8]) -> Result<CertInfo, TlsError> {
    let cert_error = |msg| TlsError::Cert { path: path.to_path_buf(), setting, msg };
    let i = CertInfo::from_der(der).map_err(cert_error)?;
    if i.version != 3 {
        return Err(TlsError::Cert {
            path: path.to_path_buf(),
            setting,
            msg: format!(
                "X.509 v{} certificate; TLS peers refuse anything but v3: re-issue it \
                 (`invpnctl cert sign`, or `openssl x509 -req ... -extfile`)",
                i.version
            ),
        });
    }
    Ok(i)
}

/// Whether a PEM key is encrypted (PKCS#8 `ENCRYPTED PRIVATE KEY`, or a
/// traditional key with `Proc-Type: 4,ENCRYPTED`).
fn is_encrypted(pem: &[u8]) -> bool {
    let has = |needle: &[u8]| pem.windows(needle.len()).any(|w| w == needle);
    has(b"-----BEGIN ENCRYPTED PRIVATE KEY-----") || has(b"Proc-Type: 4,ENCRYPTED")
}

/// A warning if the key file may be read or written by others than its
/// owner (as ssh says it), `None` if not or if it cannot be looked at
/// (reading it says why).
pub fn key_permissions_warning(key: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(key).ok()?.permissions().mode() & 0o7777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "{}: permissions {mode:04o} are too open: a private key should be readable by \
             its owner only (chmod 600)",
            key.display()
        )
    })
}

impl Material {
    /// Loads and checks the key, certificate, CA and CRLs named in `[ssl]`:
    /// the certificate must be X.509 v3 with a MAC as CN, match the key,
    /// verify against the CA at `now` and not be revoked; the CRLs must be
    /// the CA's (see [`crl`]).
    pub fn load(ssl: &Ssl, now: UnixTime) -> Result<Material, TlsError> {
        let provider = provider();
        let ca_certs = certs(&ssl.ca, "ca")?;
        let mut roots = RootCertStore::empty();
        let mut cas = Vec::new();
        for c in &ca_certs {
            let i = info(&ssl.ca, "ca", c)?;
            if !i.is_ca {
                return Err(TlsError::Cert {
                    path: ssl.ca.clone(),
                    setting: "ca",
                    msg: format!(
                        "{} is not a CA certificate (no basicConstraints CA:TRUE); \
                         is this a node's certificate? [ssl] ca names the network's CA",
                        i.subject
                    ),
                });
            }
            cas.push(i);
            roots.add(c.clone()).map_err(|e| TlsError::Cert {
                path: ssl.ca.clone(),
                setting: "ca",
                msg: format!("not usable as a CA certificate: {e}"),
            })?;
        }
        let chain = certs(&ssl.cert, "cert")?;
        let cert = info(&ssl.cert, "cert", &chain[0])?;
        let cert_error = |msg| TlsError::Cert { path: ssl.cert.clone(), setting: "cert", msg };
        let mac = cert.mac().map_err(cert_error)?;
        if let Some(msg) = cert.eku_problem() {
            return Err(cert_error(msg));
        }

        let key_pem = read(&ssl.key, "key")?;
        if is_encrypted(&key_pem) {
            let k = ssl.key.display();
            return Err(TlsError::Key {
                path: ssl.key.clone(),
                msg: format!(
                    "encrypted: invpnd needs an unencrypted key (openssl pkey -in {k} \
                     -out {k}.plain, then chmod 600 it and name it in [ssl] key)"
                ),
            });
        }
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem {
            path: ssl.key.clone(),
            setting: "key",
            msg: format!("no private key found (expected PEM PKCS#1, PKCS#8 or SEC1): {e}"),
        })?;
        let signer = provider.key_provider.load_private_key(key).map_err(|e| TlsError::Key {
            path: ssl.key.clone(),
            msg: format!("unsupported private key (RSA >= 2048, ECDSA P-256/P-384, Ed25519): {e}"),
        })?;
        let certified = CertifiedKey::new(chain.clone(), signer);
        if let Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) =
            certified.keys_match()
        {
            return Err(TlsError::Mismatch { key: ssl.key.clone(), cert: ssl.cert.clone() });
        }
        let crls = ssl.crl.as_deref().map(|p| crl::load(p, &ca_certs)).transpose()?;
        let revocation: Arc<[webpki::CertRevocationList<'static>]> =
            crls.as_ref().map_or_else(|| Vec::new().into(), |c| c.parsed.clone());
        let roots = Arc::new(roots);
        verify::verify_chain(&provider, &roots, &revocation, &chain[0], &chain[1..], now).map_err(
            |e| match (&e, &ssl.crl) {
                (rustls::Error::InvalidCertificate(CertificateError::Revoked), Some(crl)) => {
                    TlsError::Revoked { cert: ssl.cert.clone(), crl: crl.clone() }
                }
                _ => TlsError::Chain {
                    cert: ssl.cert.clone(),
                    ca: ssl.ca.clone(),
                    msg: describe(&e),
                },
            },
        )?;
        let client_verifier = NodeClientVerifier::new(
            provider.clone(),
            roots.clone(),
            crls.as_ref().map_or(Vec::new(), |c| c.ders.clone()),
        )
        .map_err(|e| TlsError::Crl {
            path: ssl.crl.clone().unwrap_or_default(),
            msg: format!("rustls refuses it: {e}"),
        })?;
        Ok(Material {
            mac,
            cert,
            cas,
            crls,
            provider,
            roots,
            certified: Arc::new(certified),
            client_verifier: Arc::new(client_verifier),
            revocation,
        })
    }

    /// Warnings about the material worth logging at `now` (Unix seconds):
    /// out-of-date CRLs.
    pub fn warnings(&self, now: i64) -> Vec<String> {
        self.crls.as_ref().map_or(Vec::new(), |c| c.warnings(now))
    }

    /// The configuration for accepting links.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, rustls::Error> {
        let mut c = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_client_cert_verifier(self.client_verifier.clone())
            .with_cert_resolver(Arc::new(OwnCert(self.certified.clone())));
        c.alpn_protocols = vec![ALPN_INVPN2.to_vec(), ALPN_LANE.to_vec()];
        c.send_tls13_tickets = 0;
        c.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        Ok(Arc::new(c))
    }

    /// The configuration for dialling the node whose MAC is `expected`.
    pub fn client_config(&self, expected: Mac) -> Result<Arc<ClientConfig>, rustls::Error> {
        self.client_config_for(expected, ALPN_INVPN2)
    }

    /// The configuration for dialling a lane to `expected`, a neighbour we
    /// already have a link to.
    pub fn lane_config(&self, expected: Mac) -> Result<Arc<ClientConfig>, rustls::Error> {
        self.client_config_for(expected, ALPN_LANE)
    }

    fn client_config_for(
        &self,
        expected: Mac,
        alpn: &[u8],
    ) -> Result<Arc<ClientConfig>, rustls::Error> {
        let verifier = NodeServerVerifier {
            provider: self.provider.clone(),
            roots: self.roots.clone(),
            crls: self.revocation.clone(),
            expected,
        };
        let mut c = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(Arc::new(OwnCert(self.certified.clone())));
        c.alpn_protocols = vec![alpn.to_vec()];
        c.enable_sni = false;
        c.resumption = Resumption::disabled();
        Ok(Arc::new(c))
    }

    /// Re-checks a linked peer's chain against this material's CA and CRLs
    /// (after a reload) as its handshake did: as a client's if the peer
    /// dialled us (`accepted`), as a server's if we dialled it. The MAC in
    /// it must still be `peer`'s.
    pub fn verify_peer(
        &self,
        chain: &[CertificateDer<'static>],
        accepted: bool,
        peer: Mac,
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let (ee, rest) = chain.split_first().ok_or(rustls::Error::NoCertificatesPresented)?;
        let mac = if accepted {
            self.client_verifier.verify_client_cert(ee, rest, now)?;
            verify::peer_mac(ee)?
        } else {
            verify::verify_chain(&self.provider, &self.roots, &self.revocation, ee, rest, now)?
        };
        if mac != peer {
            return Err(rustls::Error::General(format!(
                "the certificate now names {mac}, not {peer}"
            )));
        }
        Ok(())
    }
}

/// Presents the node's certificate on both sides of every handshake.
#[derive(Debug)]
struct OwnCert(Arc<CertifiedKey>);

impl ResolvesServerCert for OwnCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

impl ResolvesClientCert for OwnCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// An operator-readable reason for a failed handshake or verification.
pub fn describe(e: &rustls::Error) -> String {
    use rustls::Error as E;
    match e {
        E::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => "certificate not signed by the network's CA".into(),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "certificate expired".into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "certificate not valid yet (check the clocks)".into()
            }
            CertificateError::BadEncoding => "certificate badly encoded (X.509 v1?)".into(),
            CertificateError::BadSignature => {
                "certificate signature does not verify (signed by another CA of the same name?)"
                    .into()
            }
            CertificateError::Revoked => "certificate revoked (listed in the CRL)".into(),
            CertificateError::UnknownRevocationStatus => {
                "revocation status unknown (no CRL of the issuer)".into()
            }
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                "certificate not valid for TLS client/server use (extendedKeyUsage)".into()
            }
            CertificateError::Other(o) => o.to_string(),
            other => format!("bad certificate ({other:?})"),
        },
        E::AlertReceived(a) => format!("the peer refused the handshake (alert {a:?})"),
        E::NoCertificatesPresented => "the peer presented no certificate".into(),
        E::InvalidCertRevocationList(c) => format!("the CRL is unusable ({c:?})"),
        E::NoApplicationProtocol => "no common ALPN protocol".into(),
        E::InvalidMessage(m) => format!("not TLS or corrupt ({m:?})"),
        E::PeerIncompatible(p) => format!("incompatible TLS peer ({p:?})"),
        other => other.to_string(),
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
