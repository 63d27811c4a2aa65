//! `invpnctl cert verify`: would invpnd's peers accept this node
//! certificate? The chain goes through rustls-webpki as in the daemon,
//! once as a server certificate and once as a client certificate (links
//! authenticate both ways); the rest (dates, the MAC, usages, version) is
//! read with x509-parser so that every problem is reported, not only the
//! first one webpki meets.

use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use serde::Serialize;
use webpki::{
    CertRevocationList, EndEntityCert, ExpirationPolicy, KeyUsage, RevocationCheckDepth,
    RevocationOptionsBuilder, UnknownStatusPolicy,
};

use super::inspect::{self, CertFields, Contents};
use super::CtlError;
use crate::tls::cert_info::unix_to_text;

/// A certificate expiring sooner than this many days is a warning.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// One problem: a stable short label for scripts, and an explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// E.g. `expired`, `unknown-issuer`, `no-client-auth`.
    pub label: &'static str,
    /// One sentence for people.
    pub explanation: String,
}

/// The verdict on one certificate (what `--json` prints).
#[derive(Debug, Serialize)]
pub struct Report {
    /// The certificate's file.
    pub file: String,
    /// Whether invpnd's peers would accept it: no reasons.
    pub valid: bool,
    /// Why not, if not.
    pub reasons: Vec<Problem>,
    /// What is not wrong yet.
    pub warnings: Vec<Problem>,
    /// The CA file the chain was checked against, if any.
    pub ca: Option<String>,
    /// The CRL files read.
    pub crls: Vec<String>,
    /// The certificate's fields.
    pub certificate: CertFields,
}

/// Where to look, from the command line.
#[derive(Debug)]
pub struct Inputs<'a> {
    /// The node certificate, perhaps followed by intermediates.
    pub file: &'a str,
    /// The CA certificate(s) to chain to.
    pub ca: Option<&'a str>,
    /// Revocation lists, PEM or DER.
    pub crls: &'a [String],
    /// Unix seconds.
    pub now: i64,
}

fn p(label: &'static str, explanation: impl Into<String>) -> Problem {
    Problem { label, explanation: explanation.into() }
}

fn read_crls(file: &str) -> Result<Vec<CertRevocationList<'static>>, CtlError> {
    use crate::tls::crl;
    let bytes =
        std::fs::read(file).map_err(|e| CtlError::File(format!("{file}: cannot read: {e}")))?;
    crl::parse(&bytes)
        .and_then(|ders| ders.iter().map(|d| crl::to_webpki(d)).collect())
        .map_err(|e| CtlError::File(format!("{file}: {e}")))
}

/// Checks a certificate. Errors (exit status 2) are files that cannot be
/// read or parsed; a certificate that is merely bad gives a [`Report`]
/// with reasons.
pub fn verify(inputs: &Inputs<'_>) -> Result<Report, CtlError> {
    let file = inputs.file;
    let chain = match inspect::read(file)? {
        Contents::Certificates(c) => c,
        Contents::Request(_) => {
            return Err(CtlError::File(format!(
                "{file}: a certificate signing request, not a certificate (sign it first)"
            )))
        }
    };
    let Some((ee, intermediates)) = chain.split_first() else {
        return Err(CtlError::File(format!("{file}: no certificate in this file")));
    };
    let fields =
        CertFields::from_der(ee, inputs.now).map_err(|e| CtlError::File(format!("{file}: {e}")))?;
    let mut reasons = own_checks(&fields, inputs.now);
    let mut warnings = Vec::new();
    if fields.days_left >= 0
        && fields.days_left < EXPIRY_WARNING_DAYS
        && inputs.now >= fields.not_before_unix
    {
        warnings.push(p(
            "expires-soon",
            format!(
                "the certificate expires on {} ({} day(s) left)",
                fields.not_after, fields.days_left
            ),
        ));
    }
    let mut crls = Vec::new();
    for f in inputs.crls {
        crls.extend(read_crls(f)?);
    }
    match inputs.ca {
        None => {
            warnings
                .push(p("no-ca", "no CA given (--ca FILE or -c CONF): the chain was not checked"));
            if !crls.is_empty() {
                warnings.push(p("no-ca", "without a CA the CRLs were not checked either"));
            }
        }
        Some(ca) => {
            let anchors_der = read_ca(ca, inputs.now, &mut warnings)?;
            let anchors: Vec<TrustAnchor<'_>> = anchors_der
                .iter()
                .map(|d| {
                    webpki::anchor_from_trusted_cert(d).map_err(|e| {
                        CtlError::File(format!("{ca}: not a usable CA certificate ({e:?})"))
                    })
                })
                .collect::<Result<_, _>>()?;
            let cert = EndEntityCert::try_from(ee)
                .map_err(|e| CtlError::File(format!("{file}: webpki cannot read it ({e:?})")));
            match cert {
                Ok(cert) => {
                    for (usage, label) in [
                        (KeyUsage::server_auth(), "no-server-auth"),
                        (KeyUsage::client_auth(), "no-client-auth"),
                    ] {
                        if let Err(e) = chain_check(
                            &cert,
                            &anchors,
                            intermediates,
                            &crls,
                            usage,
                            &fields,
                            inputs.now,
                        ) {
                            reasons.push(webpki_problem(&e, label, ca, &fields));
                        }
                    }
                }
                Err(_) if fields.version != 3 => {} // not-v3 already says why
                Err(e) => reasons.push(p("malformed", e.to_string())),
            }
        }
    }
    let mut seen = Vec::new();
    reasons.retain(|r| {
        let new = !seen.contains(&r.label);
        seen.push(r.label);
        new
    });
    Ok(Report {
        file: file.to_string(),
        valid: reasons.is_empty(),
        reasons,
        warnings,
        ca: inputs.ca.map(str::to_string),
        crls: inputs.crls.to_vec(),
        certificate: fields,
    })
}

/// What x509-parser can tell without the CA: version, dates, the MAC,
/// CA:TRUE, usages.
fn own_checks(f: &CertFields, now: i64) -> Vec<Problem> {
    let mut r = Vec::new();
    if f.version != 3 {
        r.push(p(
            "not-v3",
            format!(
                "X.509 v{}: TLS peers accept only v3 (re-issue it with `invpnctl cert sign`)",
                f.version
            ),
        ));
    }
    if now < f.not_before_unix {
        r.push(p("not-yet-valid", format!("the certificate is valid only from {}", f.not_before)));
    } else if now > f.not_after_unix {
        r.push(p(
            "expired",
            format!("the certificate expired on {} ({} day(s) ago)", f.not_after, -f.days_left),
        ));
    }
    if f.is_ca {
        r.push(p("ca-certificate", "a CA certificate (basicConstraints CA:TRUE), not a node's"));
    } else if let Some(why) = &f.mac_problem {
        r.push(p("cn-not-mac", format!("{why}: a node's CN must be its unicast MAC")));
    }
    if let Some(ku) = &f.key_usage {
        if !ku.iter().any(|k| k == "digitalSignature") {
            r.push(p(
                "key-usage",
                "keyUsage lacks digitalSignature: the key cannot sign TLS handshakes",
            ));
        }
    }
    match &f.extended_key_usage {
        None => {}
        Some(eku) if eku.iter().any(|k| k == "any") => {}
        Some(eku) => {
            if !eku.iter().any(|k| k == "serverAuth") {
                r.push(p(
                    "no-server-auth",
                    "extendedKeyUsage lacks serverAuth: peers that dial this node refuse it",
                ));
            }
            if !eku.iter().any(|k| k == "clientAuth") {
                r.push(p(
                    "no-client-auth",
                    "extendedKeyUsage lacks clientAuth: peers it dials refuse it",
                ));
            }
        }
    }
    r
}

/// Reads the CA file; an expired CA is a warning (webpki, and so invpnd,
/// does not check a trust anchor's dates; OpenSSL, and so invpn 0.4, does).
fn read_ca(
    ca: &str,
    now: i64,
    warnings: &mut Vec<Problem>,
) -> Result<Vec<CertificateDer<'static>>, CtlError> {
    let certs = match inspect::read(ca)? {
        Contents::Certificates(c) => c,
        Contents::Request(_) => {
            return Err(CtlError::File(format!(
                "{ca}: a certificate request, not a CA certificate"
            )))
        }
    };
    for der in &certs {
        let f = CertFields::from_der(der, now).map_err(|e| CtlError::File(format!("{ca}: {e}")))?;
        if now > f.not_after_unix {
            warnings.push(p(
                "ca-expired",
                format!("the CA certificate expired on {}: invpnd still accepts it, invpn 0.4 (OpenSSL) does not", f.not_after),
            ));
        } else if f.days_left < EXPIRY_WARNING_DAYS {
            warnings.push(p(
                "ca-expires-soon",
                format!("the CA certificate expires on {}", f.not_after),
            ));
        }
    }
    Ok(certs)
}

/// webpki's check for one usage. The certificate's own dates were checked
/// already, so the chain is checked at a moment inside them: an expired
/// certificate from another CA says both.
fn chain_check(
    cert: &EndEntityCert<'_>,
    anchors: &[TrustAnchor<'_>],
    intermediates: &[CertificateDer<'_>],
    crls: &[CertRevocationList<'_>],
    usage: KeyUsage,
    f: &CertFields,
    now: i64,
) -> Result<(), webpki::Error> {
    let at = now.clamp(f.not_before_unix, f.not_after_unix).max(0) as u64;
    let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(at));
    let refs: Vec<&CertRevocationList<'_>> = crls.iter().collect();
    let revocation = RevocationOptionsBuilder::new(&refs).ok().map(|b| {
        b.with_depth(RevocationCheckDepth::EndEntity)
            .with_status_policy(UnknownStatusPolicy::Deny)
            .with_expiration_policy(ExpirationPolicy::Enforce)
            .build()
    });
    let algs = rustls::crypto::ring::default_provider().signature_verification_algorithms.all;
    cert.verify_for_usage(algs, anchors, intermediates, time, usage, revocation, None).map(|_| ())
}

fn webpki_problem(e: &webpki::Error, eku_label: &'static str, ca: &str, f: &CertFields) -> Problem {
    use webpki::Error as E;
    match e {
        E::UnknownIssuer => {
            p("unknown-issuer", format!("not signed by the CA in {ca} (issuer {})", f.issuer))
        }
        E::InvalidSignatureForPublicKey
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => p(
            "bad-signature",
            format!("not signed by the key of {ca} (a CA of the same name, not this one?)"),
        ),
        E::CertRevoked => p("revoked", "the CA's revocation list revokes it"),
        E::UnknownRevocationStatus => {
            p("revocation-unknown", "no revocation list given is from the certificate's issuer")
        }
        E::CrlExpired { .. } => {
            p("crl-expired", "the revocation list is out of date (past its nextUpdate)")
        }
        E::InvalidCrlSignatureForPublicKey | E::IssuerNotCrlSigner => {
            p("crl-invalid", format!("the revocation list is not signed by the CA in {ca}"))
        }
        E::RequiredEkuNotFoundContext(_) => p(
            eku_label,
            format!(
                "extendedKeyUsage lacks {}",
                if eku_label == "no-server-auth" { "serverAuth" } else { "clientAuth" }
            ),
        ),
        E::CaUsedAsEndEntity => {
            p("ca-certificate", "a CA certificate (basicConstraints CA:TRUE), not a node's")
        }
        E::UnsupportedCertVersion => p("not-v3", "TLS peers accept only X.509 v3"),
        E::CertExpired { .. } | E::CertNotValidYet { .. } => p(
            "chain-dates",
            format!("an intermediate certificate is out of its validity period ({e:?})"),
        ),
        other => p("chain", format!("webpki refuses the chain: {other:?}")),
    }
}

/// The `cert verify` text: a verdict line, then one `label: explanation`
/// line per reason and one `warning: label: explanation` line per warning.
pub fn text(r: &Report) -> String {
    let c = &r.certificate;
    let mut s = if r.valid {
        format!(
            "{}: valid: node {}, valid until {}{}\n",
            r.file,
            c.mac.as_deref().unwrap_or("?"),
            unix_to_text(c.not_after_unix),
            if r.ca.is_some() { ", signed by the CA" } else { "" }
        )
    } else {
        format!("{}: INVALID\n", r.file)
    };
    for p in &r.reasons {
        s.push_str(&format!("{}: {}\n", p.label, p.explanation));
    }
    for p in &r.warnings {
        s.push_str(&format!("warning: {}: {}\n", p.label, p.explanation));
    }
    s
}
