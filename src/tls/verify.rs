//! Certificate verification for links: both sides chain to the configured
//! CA (rustls-webpki does that), and the Common Name must be a MAC. The
//! dialler also checks that the MAC is the one it meant to reach.
//!
//! rustls's `ServerName` cannot hold a MAC, so the server check is a custom
//! `ServerCertVerifier` that delegates the chain to
//! `verify_server_cert_signed_by_trust_anchor` and compares the CN itself.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, RootCertStore,
    SignatureScheme,
};

use super::cert_info::CertInfo;
use crate::core::Mac;

/// A certificate problem of invpnd's own (not webpki's), carried inside
/// `rustls::Error` so that it reaches the handshake's log line.
#[derive(Debug)]
pub struct PeerCertError(pub String);

impl fmt::Display for PeerCertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PeerCertError {}

fn other(msg: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(PeerCertError(
        msg,
    )))))
}

/// The MAC in a peer certificate's CN, as a rustls error if there is none.
pub fn peer_mac(end_entity: &CertificateDer<'_>) -> Result<Mac, rustls::Error> {
    CertInfo::from_der(end_entity).and_then(|i| i.mac()).map_err(other)
}

/// Checks a chain against the roots, as the dialler does, with no name check.
pub fn verify_chain(
    provider: &CryptoProvider,
    roots: &RootCertStore,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
) -> Result<Mac, rustls::Error> {
    let cert = ParsedCertificate::try_from(end_entity)?;
    rustls::client::verify_server_cert_signed_by_trust_anchor(
        &cert,
        roots,
        intermediates,
        now,
        provider.signature_verification_algorithms.all,
    )?;
    peer_mac(end_entity)
}

/// Verifies the server a node dialled: chain to the CA, CN = the MAC expected.
#[derive(Debug)]
pub struct NodeServerVerifier {
    pub provider: Arc<CryptoProvider>,
    pub roots: Arc<RootCertStore>,
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
        let mac = verify_chain(&self.provider, &self.roots, end_entity, intermediates, now)?;
        if mac != self.expected {
            return Err(other(format!(
                "the node answering is {mac}, not {} as expected",
                self.expected
            )));
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
/// a certificate required), then the CN must be a MAC.
#[derive(Debug)]
pub struct NodeClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

impl NodeClientVerifier {
    /// A verifier trusting exactly `roots`.
    pub fn new(
        provider: Arc<CryptoProvider>,
        roots: Arc<RootCertStore>,
    ) -> Result<NodeClientVerifier, rustls::server::VerifierBuilderError> {
        let inner = WebPkiClientVerifier::builder_with_provider(roots, provider).build()?;
        Ok(NodeClientVerifier { inner })
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
