//! TLS material and handshakes, in memory.

use std::path::Path;

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, ServerConnection};
use time::Duration;

use super::*;
use crate::pki::{self, CertAndKey, KeyType, Validity};

fn mac(n: u8) -> Mac {
    Mac([2, 0x50, 0x56, 0, 0, n])
}

fn now() -> UnixTime {
    UnixTime::now()
}

struct Net {
    dir: tempfile::TempDir,
    ca: CertAndKey,
}

impl Net {
    fn new() -> Net {
        let name = format!("test CA {}", fastrand::u64(..));
        let ca = pki::new_ca(&name, Validity::days_from_now(30), KeyType::EcdsaP256).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.crt"), &ca.cert_pem).unwrap();
        Net { dir, ca }
    }

    fn write(&self, name: &str, ck: &CertAndKey) -> Ssl {
        let p = |ext: &str| self.dir.path().join(format!("{name}.{ext}"));
        std::fs::write(p("crt"), &ck.cert_pem).unwrap();
        std::fs::write(p("key"), &ck.key_pem).unwrap();
        Ssl { key: p("key"), cert: p("crt"), ca: self.dir.path().join("ca.crt"), crl: None }
    }

    fn node(&self, name: &str, m: Mac, key: KeyType) -> Ssl {
        let ck = pki::new_node(&self.ca, m, Validity::days_from_now(30), key).unwrap();
        self.write(name, &ck)
    }
}

fn load(ssl: &Ssl) -> Result<Material, TlsError> {
    Material::load(ssl, now())
}

#[test]
fn loads_every_generated_key_type() {
    let net = Net::new();
    for (i, kt) in
        [KeyType::EcdsaP256, KeyType::EcdsaP384, KeyType::Ed25519].into_iter().enumerate()
    {
        let m = load(&net.node(&format!("n{i}"), mac(i as u8 + 1), kt)).unwrap();
        assert_eq!(m.mac, mac(i as u8 + 1));
        assert_eq!(m.cert.version, 3);
        assert_eq!(m.cas.len(), 1);
        assert!(m.cas[0].is_ca && !m.cert.is_ca);
    }
}

#[test]
fn refuses_bad_material_with_reasons() {
    let net = Net::new();
    let other = pki::new_ca("other CA", Validity::days_from_now(30), KeyType::EcdsaP256).unwrap();

    let foreign =
        pki::new_node(&other, mac(1), Validity::days_from_now(30), KeyType::EcdsaP256).unwrap();
    let e = load(&net.write("foreign", &foreign)).unwrap_err().to_string();
    assert!(e.contains("does not verify against the CA") && e.contains("not signed by"), "{e}");

    let named =
        pki::issue(&net.ca, "node1", Validity::days_from_now(30), KeyType::EcdsaP256).unwrap();
    let e = load(&net.write("named", &named)).unwrap_err().to_string();
    assert!(e.contains("\"node1\" is not a MAC address"), "{e}");

    let t = time::OffsetDateTime::now_utc();
    let old = Validity { not_before: t - Duration::days(30), not_after: t - Duration::days(1) };
    let expired = pki::issue(&net.ca, &mac(1).to_string(), old, KeyType::EcdsaP256).unwrap();
    let e = load(&net.write("expired", &expired)).unwrap_err().to_string();
    assert!(e.contains("expired"), "{e}");

    let soon = Validity { not_before: t + Duration::days(1), not_after: t + Duration::days(30) };
    let future = pki::issue(&net.ca, &mac(1).to_string(), soon, KeyType::EcdsaP256).unwrap();
    let e = load(&net.write("future", &future)).unwrap_err().to_string();
    assert!(e.contains("not valid yet"), "{e}");

    let a =
        pki::new_node(&net.ca, mac(1), Validity::days_from_now(30), KeyType::EcdsaP256).unwrap();
    let b =
        pki::new_node(&net.ca, mac(2), Validity::days_from_now(30), KeyType::EcdsaP256).unwrap();
    let mixed = CertAndKey { cert_pem: a.cert_pem, key_pem: b.key_pem };
    let e = load(&net.write("mixed", &mixed)).unwrap_err();
    assert!(matches!(e, TlsError::Mismatch { .. }), "{e}");

    let ok = net.node("ok", mac(3), KeyType::EcdsaP256);
    let e = load(&Ssl { key: Path::new("/nonexistent.key").into(), ..ok.clone() }).unwrap_err();
    assert!(e.to_string().starts_with("/nonexistent.key: cannot read"), "{e}");
    std::fs::write(net.dir.path().join("empty.crt"), "hello\n").unwrap();
    let e = load(&Ssl { cert: net.dir.path().join("empty.crt"), ..ok.clone() }).unwrap_err();
    assert!(e.to_string().contains("no certificate in this file"), "{e}");
    let e = load(&Ssl { key: ok.cert.clone(), ..ok.clone() }).unwrap_err();
    assert!(e.to_string().contains("no private key found"), "{e}");
    let e = load(&Ssl { ca: ok.cert.clone(), ..ok }).unwrap_err();
    assert!(e.to_string().contains("is not a CA certificate"), "{e}");
}

/// Pumps TLS records between the two ends until both finish or one fails.
fn handshake(c: &mut ClientConnection, s: &mut ServerConnection) -> Result<(), rustls::Error> {
    for _ in 0..20 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            s.read_tls(&mut &buf[..]).unwrap();
            s.process_new_packets()?;
        }
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            c.read_tls(&mut &buf[..]).unwrap();
            c.process_new_packets()?;
        }
        if !c.is_handshaking() && !s.is_handshaking() {
            return Ok(());
        }
    }
    Err(rustls::Error::General("handshake did not finish".into()))
}

fn connect(
    client: &Material,
    server: &Material,
    expected: Mac,
) -> (ClientConnection, ServerConnection, Result<(), rustls::Error>) {
    let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let mut c = ClientConnection::new(client.client_config(expected).unwrap(), name).unwrap();
    let mut s = ServerConnection::new(server.server_config().unwrap()).unwrap();
    let r = handshake(&mut c, &mut s);
    (c, s, r)
}

#[test]
fn mutual_handshake_agrees_on_alpn_and_identities() {
    let net = Net::new();
    let a = load(&net.node("a", mac(1), KeyType::EcdsaP256)).unwrap();
    let b = load(&net.node("b", mac(2), KeyType::Ed25519)).unwrap();
    let (c, s, r) = connect(&a, &b, mac(2));
    r.unwrap();
    assert_eq!(c.alpn_protocol(), Some(ALPN_INVPN2));
    assert_eq!(s.alpn_protocol(), Some(ALPN_INVPN2));
    let client_chain = s.peer_certificates().unwrap();
    assert_eq!(verify::peer_mac(&client_chain[0]).unwrap(), mac(1));
    b.verify_peer(client_chain, true, mac(1), now()).unwrap();
    let server_chain = c.peer_certificates().unwrap();
    assert_eq!(verify::peer_mac(&server_chain[0]).unwrap(), mac(2));
    a.verify_peer(server_chain, false, mac(2), now()).unwrap();
    // a reload re-checks the MAC too
    let e = describe(&b.verify_peer(client_chain, true, mac(7), now()).unwrap_err());
    assert!(e.contains("names 02:50:56:00:00:01, not 02:50:56:00:00:07"), "{e}");
    // and the CA: material from another network refuses both directions
    let other = Net::new();
    let x = load(&other.node("x", mac(9), KeyType::EcdsaP256)).unwrap();
    assert!(x.verify_peer(client_chain, true, mac(1), now()).is_err());
    assert!(x.verify_peer(server_chain, false, mac(2), now()).is_err());
}

#[test]
fn dialler_refuses_an_unexpected_mac() {
    let net = Net::new();
    let a = load(&net.node("a", mac(1), KeyType::EcdsaP256)).unwrap();
    let b = load(&net.node("b", mac(2), KeyType::EcdsaP256)).unwrap();
    let (_, _, r) = connect(&a, &b, mac(3));
    let e = describe(&r.unwrap_err());
    assert!(e.contains("02:50:56:00:00:02, not 02:50:56:00:00:03"), "{e}");
}

#[test]
fn server_refuses_a_client_from_another_ca() {
    let net = Net::new();
    let other = Net::new();
    // a trusts both CAs, but its own certificate comes from the other one
    let a_ssl = other.node("a", mac(1), KeyType::EcdsaP256);
    let both = format!("{}{}", other.ca.cert_pem, net.ca.cert_pem);
    std::fs::write(&a_ssl.ca, both).unwrap();
    let a = load(&a_ssl).unwrap();
    let b = load(&net.node("b", mac(2), KeyType::EcdsaP256)).unwrap();
    assert_eq!(a.cas.len(), 2);
    let (_, _, r) = connect(&a, &b, mac(2));
    let e = describe(&r.unwrap_err());
    assert!(e.contains("not signed by the network's CA"), "{e}");
    // the other way round, the dialler refuses first
    let (_, _, r) = connect(&b, &a, mac(1));
    assert!(describe(&r.unwrap_err()).contains("not signed by"));
}

#[test]
fn operator_mistakes_with_credentials() {
    use std::os::unix::fs::PermissionsExt;
    let net = Net::new();
    let ssl = net.node("n", mac(1), KeyType::EcdsaP256);
    // a node certificate given as the CA
    let e = load(&Ssl { ca: ssl.cert.clone(), ..ssl.clone() }).unwrap_err().to_string();
    assert!(e.contains("n.crt") && e.contains("is not a CA certificate"), "{e}");
    // an encrypted key, both PEM forms
    for pem in [
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMII=\n-----END ENCRYPTED PRIVATE KEY-----\n",
        "-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\n\
         MII=\n-----END EC PRIVATE KEY-----\n",
    ] {
        std::fs::write(&ssl.key, pem).unwrap();
        let e = load(&ssl).unwrap_err().to_string();
        assert!(e.contains("n.key: encrypted: invpnd needs an unencrypted key"), "{e}");
        assert!(e.contains("openssl pkey -in ") && e.contains("n.key.plain"), "{e}");
    }
    // key permissions
    std::fs::set_permissions(&ssl.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let w = key_permissions_warning(&ssl.key).unwrap();
    assert!(w.contains("permissions 0644 are too open"), "{w}");
    std::fs::set_permissions(&ssl.key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(key_permissions_warning(&ssl.key), None);
}

#[test]
fn extended_key_usage_must_allow_both_directions() {
    use cert_info::Eku;
    let mut i = CertInfo::from_der(
        &CertificateDer::from_pem_slice(Net::new().ca.cert_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    for (eku, want) in [
        (None, None),
        (Some(Eku { client: true, server: true }), None),
        (Some(Eku { client: false, server: true }), Some("lacks clientAuth")),
        (Some(Eku { client: true, server: false }), Some("lacks serverAuth")),
    ] {
        i.eku = eku;
        let got = i.eku_problem();
        assert_eq!(got.is_some(), want.is_some(), "{got:?}");
        if let (Some(g), Some(w)) = (got, want) {
            assert!(g.contains(w) && g.contains("links would fail"), "{g}");
        }
    }
}

/// A CRL of `net`'s CA revoking the certificates in `certs` (PEM files).
fn crl_revoking(net: &Net, certs: &[&Path], next_update_days: i64) -> std::path::PathBuf {
    let revoked = certs
        .iter()
        .map(|p| {
            let der = CertificateDer::from_pem_file(p).unwrap();
            pki::Revoked {
                serial: crl::serial(&der).unwrap(),
                time: 1_700_000_000,
                reason: Some(rcgen::RevocationReason::KeyCompromise),
                subject: String::new(),
            }
        })
        .collect::<Vec<_>>();
    let t = time::OffsetDateTime::now_utc();
    let pem = pki::sign_crl(
        &net.ca,
        &revoked,
        1,
        t - Duration::days(2),
        t + Duration::days(next_update_days),
    )
    .unwrap();
    let path = net.dir.path().join(format!("crl{}.pem", fastrand::u32(..)));
    std::fs::write(&path, pem).unwrap();
    path
}

#[test]
fn a_crl_refuses_revoked_peers_in_both_directions() {
    let net = Net::new();
    let a_ssl = net.node("a", mac(1), KeyType::EcdsaP256);
    let b_ssl = net.node("b", mac(2), KeyType::EcdsaP256);
    let c_ssl = net.node("c", mac(3), KeyType::EcdsaP256);
    let crl = crl_revoking(&net, &[&c_ssl.cert], 30);
    let with_crl = |s: &Ssl| load(&Ssl { crl: Some(crl.clone()), ..s.clone() });
    let a = with_crl(&a_ssl).unwrap();
    assert_eq!(a.crls.as_ref().unwrap().info[0].revoked.len(), 1);
    let b = with_crl(&b_ssl).unwrap();
    // c's own material refuses to load: its certificate is revoked
    let e = with_crl(&c_ssl).unwrap_err().to_string();
    assert!(e.contains("c.crt: this node's certificate is revoked by the CRL in"), "{e}");
    let c = load(&c_ssl).unwrap(); // c without the CRL (a node that kept an old one)
    connect(&a, &b, mac(2)).2.unwrap();
    // c dials a: a (server) refuses the client certificate
    let e = describe(&connect(&c, &a, mac(1)).2.unwrap_err());
    assert!(e.contains("revoked"), "{e}");
    // a dials c: a (client) refuses the server certificate
    let e = describe(&connect(&a, &c, mac(3)).2.unwrap_err());
    assert!(e.contains("certificate revoked"), "{e}");
    // a link made before the CRL came is refused on re-check (as on reload)
    let a_old = load(&a_ssl).unwrap();
    let (conn, _, r) = connect(&a_old, &c, mac(3));
    r.unwrap();
    let chain = conn.peer_certificates().unwrap();
    a_old.verify_peer(chain, false, mac(3), now()).unwrap();
    let e = describe(&a.verify_peer(chain, false, mac(3), now()).unwrap_err());
    assert!(e.contains("revoked"), "{e}");
    let (_, srv, r) = connect(&c, &a_old, mac(1));
    r.unwrap();
    assert!(a.verify_peer(srv.peer_certificates().unwrap(), true, mac(3), now()).is_err());
    // an out-of-date CRL still revokes, with a warning
    let old = crl_revoking(&net, &[&c_ssl.cert], -1);
    let a = load(&Ssl { crl: Some(old), ..a_ssl.clone() }).unwrap();
    let w = a.warnings(time::OffsetDateTime::now_utc().unix_timestamp());
    assert!(w.len() == 1 && w[0].contains("out of date"), "{w:?}");
    assert!(connect(&c, &a, mac(1)).2.is_err());
    connect(&b, &a, mac(1)).2.unwrap();
    // a CRL of another CA is refused when loaded
    let other = Net::new();
    let foreign = crl_revoking(&other, &[], 30);
    let e = load(&Ssl { crl: Some(foreign), ..a_ssl }).unwrap_err().to_string();
    assert!(e.contains("not by the network's CA"), "{e}");
}
