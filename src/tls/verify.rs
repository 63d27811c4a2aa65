//! Certificate verification for links: both sides chain to the configured
//! CA and are checked against its CRLs (rustls-webpki does that, with the
//! policy of [`super::crl`]), and the Common Name must be a MAC. The
//! dialler also checks that the MAC is the one it meant to reach.
//!
//! rustls's `ServerName` cannot hold a MAC (and rustls's server verifier
//! insists on a name), so the server check is a custom `ServerCertVerifier`
//! that has webpki verify the chain, with the CRLs, for TLS server use, and
//! compares the CN itself. The client check is rustls's
//! `WebPkiClientVerifier` with the same CRLs and policy.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, RootCertStore,
    SignatureScheme,
};

use super::cert_info::CertInfo;
use crate::core::Mac;

/// A certificate problem of invpnd's own (not webpki's), carried inside
/// `rustls::Error` so that it reaches the handshake's log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerCertError {
    /// The certificate cannot be parsed (the parser's words).
    Unreadable(String),
    /// Its Common Name is missing or not a unicast MAC (what it is).
    NotANode(String),
    /// The node dialled answered with another node's certificate.
    WrongNode {
        /// The MAC in the certificate presented.
        answered: Mac,
        /// The MAC the dialler meant to reach.
        expected: Mac,
    },
}

impl fmt::Display for PeerCertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerCertError::Unreadable(m) | PeerCertError::NotANode(m) => f.write_str(m),
            PeerCertError::WrongNode { answered, expected } => {
                write!(f, "the node answering is {answered}, not {expected} as expected")
            }
        }
    }
}

impl std::error::Error for PeerCertError {}

impl From<PeerCertError> for rustls::Error {
    fn from(e: PeerCertError) -> rustls::Error {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
    }
}

/// The MAC in a peer certificate's CN, as a rustls error if there is none.
pub fn peer_mac(end_entity: &CertificateDer<'_>) -> Result<Mac, rustls::Error> {
    let info = CertInfo::from_der(end_entity).map_err(PeerCertError::Unreadable)?;
    Ok(info.mac().map_err(PeerCertError::NotANode)?)
}

/// Checks a chain against the roots and CRLs for TLS server use, as the
/// dialler does, with no name check; returns the MAC in its CN.
pub fn verify_chain(
    provider: &CryptoProvider,
    roots: &RootCertStore,
    crls: &[webpki::CertRevocationList<'static>],
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
) -> Result<Mac, rustls::Error> {
    // what rustls's verify_server_cert_signed_by_trust_anchor does, with
    // revocation (which that function does not offer)
    let ee = webpki::EndEntityCert::try_from(end_entity)
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    let refs: Vec<&webpki::CertRevocationList<'_>> = crls.iter().collect();
    let revocation = webpki::RevocationOptionsBuilder::new(&refs).ok().map(|b| {
        b.with_depth(super::crl::DEPTH)
            .with_status_policy(super::crl::UNKNOWN_STATUS)
            .with_expiration_policy(super::crl::EXPIRATION)
            .build()
    });
    ee.verify_for_usage(
        provider.signature_verification_algorithms.all,
        &roots.roots,
        intermediates,
        now,
        webpki::KeyUsage::server_auth(),
        revocation,
        None,
    )
    .map_err(webpki_error)?;
    peer_mac(end_entity)
}

/// webpki's verdict as the rustls error a handshake would give (rustls's
/// own mapping is private), so that [`super::describe`] reads both alike.
fn webpki_error(e: webpki::Error) -> rustls::Error {
    use webpki::Error as W;
    use CertificateError as C;
    let c = match e {
        W::BadDer | W::BadDerTime | W::TrailingData(_) => C::BadEncoding,
        W::CertNotValidYet { time, not_before } => C::NotValidYetContext { time, not_before },
        W::CertExpired { time, not_after } => C::ExpiredContext { time, not_after },
        W::InvalidCertValidity => C::Expired,
        W::UnknownIssuer => C::UnknownIssuer,
        W::CertRevoked => C::Revoked,
        W::UnknownRevocationStatus => C::UnknownRevocationStatus,
        W::CrlExpired { time, next_update } => {
            C::ExpiredRevocationListContext { time, next_update }
        }
        W::InvalidSignatureForPublicKey => C::BadSignature,
        W::RequiredEkuNotFoundContext(_) => C::InvalidPurpose,
        W::InvalidCrlSignatureForPublicKey
        | W::IssuerNotCrlSigner
        | W::UnsupportedCrlSignatureAlgorithmContext(_) => {
            return rustls::Error::InvalidCertRevocationList(
                rustls::CertRevocationListError::BadSignature,
            )
        }
        other => C::Other(OtherError(Arc::new(other))),
    };
    rustls::Error::InvalidCertificate(c)
}

/// Verifies the server a node dialled: chain to the CA, CN = the MAC expected.
#[derive(Debug)]
pub struct NodeServerVerifier {
    /// The crypto provider (ring).
    pub provider: Arc<CryptoProvider>,
    /// The network's CA certificates.
    pub roots: Arc<RootCertStore>,
    /// The CRLs of `[ssl] crl` (empty: no revocation check).
    pub crls: Arc<[webpki::CertRevocationList<'static>]>,
    /// The MAC of the node dialled.
    pub expected: Mac,
}

impl ServerCertVerifier for NodeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mac =
            verify_chain(&self.provider, &self.roots, &self.crls, end_entity, intermediates, now)?;
        if mac != self.expected {
            return Err(PeerCertError::WrongNode { answered: mac, expected: self.expected }.into());
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Verifies a connecting node: webpki's client verifier (chain to the CA,
/// not revoked, a certificate required), then the CN must be a MAC.
#[derive(Debug)]
pub struct NodeClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

impl NodeClientVerifier {
    /// A verifier trusting exactly `roots`, refusing what `crls` revoke
    /// (with the policy of [`super::crl`]).
    pub fn new(
        provider: Arc<CryptoProvider>,
        roots: Arc<RootCertStore>,
        crls: Vec<CertificateRevocationListDer<'static>>,
    ) -> Result<NodeClientVerifier, rustls::server::VerifierBuilderError> {
        let mut b = WebPkiClientVerifier::builder_with_provider(roots, provider).with_crls(crls);
        // the policy of super::crl: whole chain, unknown status allowed,
        // out-of-date lists still applied (these are the builder's defaults
        // but for the unknown status; said here so that a change shows)
        if super::crl::UNKNOWN_STATUS == webpki::UnknownStatusPolicy::Allow {
            b = b.allow_unknown_revocation_status();
        }
        if super::crl::DEPTH == webpki::RevocationCheckDepth::EndEntity {
            b = b.only_check_end_entity_revocation();
        }
        if super::crl::EXPIRATION == webpki::ExpirationPolicy::Enforce {
            b = b.enforce_revocation_expiration();
        }
        Ok(NodeClientVerifier { inner: b.build()? })
    }
}

impl ClientCertVerifier for NodeClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let ok = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        peer_mac(end_entity)?;
        Ok(ok)
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
