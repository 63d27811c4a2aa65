//! `invpnctl ca|cert ...`: certificates without openssl, checked with
//! invpnd itself and with openssl; every bad input is one clear error.

mod common;

use common::{crl, invpnctl, openssl};

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn ok(args: &[&str]) -> String {
    let (code, out, err) = invpnctl(args);
    assert_eq!(code, 0, "invpnctl {}: {err}", args.join(" "));
    out
}

fn fails(args: &[&str], want: &str) {
    let (code, _, err) = invpnctl(args);
    assert_eq!(code, 1, "invpnctl {} should fail", args.join(" "));
    assert!(
        err.starts_with("invpnctl: ") && err.contains(want),
        "invpnctl {}: {err:?} lacks {want:?}",
        args.join(" ")
    );
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `invpnd -t` with these files; returns its stdout.
fn check(key: &Path, cert: &Path, ca: &Path) -> String {
    let d = tempfile::tempdir().unwrap();
    let conf = d.path().join("invpn.conf");
    std::fs::write(
        &conf,
        format!(
            "[ssl]\nkey={}\ncert={}\nca={}\n[network]\ncache=c\n",
            key.display(),
            cert.display(),
            ca.display()
        ),
    )
    .unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_invpnd")).args(["-t", "-c", s(&conf)]).output().unwrap();
    assert!(out.status.success(), "invpnd -t refused: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_ca_and_node_certificates_that_invpnd_and_openssl_accept() {
    let d = tempfile::tempdir().unwrap();
    let ca = d.path().join("ca");
    let out = ok(&["ca", "new", "--dir", s(&ca), "--name", "Test Net", "--days", "30"]);
    assert!(out.contains("ca.crt") && out.contains("ca.key"));
    assert_eq!(mode(&ca.join("ca.key")), 0o600);
    assert_eq!(mode(&ca), 0o700);
    fails(&["ca", "new", "--dir", s(&ca)], "exists; refusing to overwrite");

    let n1 = d.path().join("n1");
    ok(&["cert", "new", "--ca-dir", s(&ca), "--mac", "02:50:56:00:00:01", "--out", s(&n1)]);
    assert_eq!(mode(&d.path().join("n1.key")), 0o600);
    let t = check(&d.path().join("n1.key"), &d.path().join("n1.crt"), &ca.join("ca.crt"));
    assert!(t.contains("node MAC:        02:50:56:00:00:01"), "{t}");
    fails(
        &["cert", "new", "--ca-dir", s(&ca), "--mac", "02:50:56:00:00:01", "--out", s(&n1)],
        "exists",
    );

    // random: a locally administered unicast MAC; ed25519 keys work too
    let r = d.path().join("r");
    let out = ok(&[
        "cert",
        "new",
        "--ca-dir",
        s(&ca),
        "--mac",
        "random",
        "--out",
        s(&r),
        "--key-type",
        "ed25519",
    ]);
    let mac: invpn::core::Mac = out.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(mac.is_local() && mac.is_node_address(), "{mac}");
    let t = check(&d.path().join("r.key"), &d.path().join("r.crt"), &ca.join("ca.crt"));
    assert!(t.contains(&mac.to_string()) && t.contains("Ed25519"), "{t}");

    // what invpn 0.4 (OpenSSL) sees: v3, CA:FALSE, CN = MAC, chains to the CA
    let text = openssl(d.path(), &["x509", "-in", "n1.crt", "-noout", "-text"]);
    assert!(text.contains("Version: 3 (0x2)"), "{text}");
    assert!(text.contains("CA:FALSE") && text.contains("CN = 02:50:56:00:00:01"), "{text}");
    let v = openssl(d.path(), &["verify", "-CAfile", "ca/ca.crt", "n1.crt"]);
    assert!(v.contains("n1.crt: OK"), "{v}");
}

#[test]
fn requests_are_signed_and_legacy_certificates_reissued() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let ca = p.join("ca");
    ok(&["ca", "new", "--dir", s(&ca)]);
    // the key stays on the node; only the request travels
    let node = p.join("node");
    ok(&["cert", "request", "--mac", "02:50:56:00:00:07", "--out", s(&node)]);
    assert_eq!(mode(&p.join("node.key")), 0o600);
    let out = ok(&[
        "cert",
        "sign",
        "--ca-dir",
        s(&ca),
        "--csr",
        s(&p.join("node.csr")),
        "--out",
        s(&p.join("node.crt")),
    ]);
    assert!(out.contains("02:50:56:00:00:07"), "{out}");
    check(&p.join("node.key"), &p.join("node.crt"), &ca.join("ca.crt"));
    fails(
        &[
            "cert",
            "sign",
            "--ca-dir",
            s(&ca),
            "--csr",
            s(&p.join("node.csr")),
            "--out",
            s(&p.join("node.crt")),
        ],
        "exists",
    );

    // a legacy node: RSA key and CSR from openssl, its X.509 v1 certificate
    // refused; re-issued as v3 from the same CSR it works
    openssl(
        p,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "old.key",
            "-out",
            "old.csr",
            "-subj",
            "/CN=02:50:56:00:00:08",
        ],
    );
    std::fs::copy(ca.join("ca.key"), p.join("ca.key")).unwrap();
    openssl(
        p,
        &[
            "x509",
            "-req",
            "-in",
            "old.csr",
            "-CA",
            "ca/ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "9",
            "-out",
            "old-v1.crt",
        ],
    );
    let show = ok(&["cert", "show", s(&p.join("old-v1.crt"))]);
    assert!(show.contains("X.509 v1 (refused by TLS peers"), "{show}");
    let (code, out, err) =
        invpnctl(&["cert", "verify", s(&p.join("old-v1.crt")), "--ca", s(&ca.join("ca.crt"))]);
    assert!(code == 1 && out.contains("\nnot-v3: X.509 v1"), "{out}{err}");
    ok(&[
        "cert",
        "sign",
        "--ca-dir",
        s(&ca),
        "--csr",
        s(&p.join("old.csr")),
        "--out",
        s(&p.join("old-v3.crt")),
    ]);
    let t = check(&p.join("old.key"), &p.join("old-v3.crt"), &ca.join("ca.crt"));
    assert!(t.contains("02:50:56:00:00:08") && t.contains("RSA 2048"), "{t}");
}

#[test]
fn a_ca_made_by_openssl_as_0_4_documented_signs_too() {
    for (kind, keygen) in [
        ("RSA PKCS#1", vec!["genrsa", "-traditional", "-out", "ca/ca.key", "2048"]),
        ("EC SEC1", vec!["ecparam", "-name", "prime256v1", "-genkey", "-out", "ca/ca.key"]),
    ] {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::create_dir(p.join("ca")).unwrap();
        openssl(p, &keygen);
        openssl(
            p,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "ca/ca.key",
                "-subj",
                "/CN=old CA",
                "-days",
                "30",
                "-out",
                "ca/ca.crt",
            ],
        );
        let out = ok(&[
            "cert",
            "new",
            "--ca-dir",
            s(&p.join("ca")),
            "--mac",
            "02:50:56:00:00:09",
            "--out",
            s(&p.join("n")),
        ]);
        assert!(out.contains("02:50:56:00:00:09"), "{kind}: {out}");
        check(&p.join("n.key"), &p.join("n.crt"), &p.join("ca/ca.crt"));
    }
}

#[test]
fn cert_show_tells_mac_issuer_validity_and_key() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    ok(&["ca", "new", "--dir", s(&p.join("ca")), "--name", "Show CA", "--key-type", "p384"]);
    ok(&[
        "cert",
        "new",
        "--ca-dir",
        s(&p.join("ca")),
        "--mac",
        "02:50:56:00:00:0A",
        "--out",
        s(&p.join("n")),
        "--days",
        "10",
    ]);
    let out = ok(&["cert", "show", s(&p.join("n.crt"))]);
    for want in [
        "MAC:          02:50:56:00:00:0a",
        "issuer:       CN=Show CA",
        "X.509 v3",
        "day(s) left",
        "key:          ECDSA P-256",
        "CA:           no",
        "SHA-256:",
    ] {
        assert!(out.contains(want), "{want:?} not in\n{out}");
    }
    let ca = ok(&["cert", "show", s(&p.join("ca/ca.crt"))]);
    assert!(ca.contains("(a CA certificate)") && ca.contains("ECDSA P-384"), "{ca}");
    // an expired certificate says so
    let pki = common::Pki::new();
    let t = time::OffsetDateTime::now_utc();
    let old = invpn::pki::Validity {
        not_before: t - time::Duration::days(5),
        not_after: t - time::Duration::days(2),
    };
    let exp = invpn::pki::issue(&pki.ca, "02:50:56:00:00:0b", old, invpn::pki::KeyType::EcdsaP256)
        .unwrap();
    let (c, _) = pki.write("old", &exp);
    assert!(ok(&["cert", "show", s(&c)]).contains("EXPIRED"));
}

#[test]
fn bad_inputs_are_clear_errors() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let ca = p.join("ca");
    ok(&["ca", "new", "--dir", s(&ca)]);
    let out = s(&p.join("x")).to_string();
    fails(
        &["cert", "new", "--ca-dir", s(&ca), "--mac", "02:50:56:00:00", "--out", &out],
        "--mac: \"02:50:56:00:00\" is not a MAC",
    );
    fails(
        &["cert", "new", "--ca-dir", s(&ca), "--mac", "01:00:5e:00:00:01", "--out", &out],
        "must be unicast",
    );
    fails(
        &["cert", "new", "--ca-dir", s(&p.join("nope")), "--mac", "random", "--out", &out],
        "nope/ca.crt: cannot read",
    );
    fails(&["cert", "new", "--ca-dir", s(&ca), "--mac", "random"], "--out is required");
    fails(
        &["cert", "new", "--ca-dir", s(&ca), "--mac", "random", "--out", &out, "--days", "0"],
        "--days",
    );
    fails(
        &["cert", "new", "--ca-dir", s(&ca), "--mac", "random", "--out", &out, "--key-type", "rsa"],
        "--key-type",
    );
    // a key that is not the CA certificate's
    let other = p.join("other");
    ok(&["ca", "new", "--dir", s(&other)]);
    let own_key = std::fs::read(ca.join("ca.key")).unwrap();
    std::fs::copy(other.join("ca.key"), ca.join("ca.key")).unwrap();
    fails(
        &["cert", "new", "--ca-dir", s(&ca), "--mac", "random", "--out", &out],
        "does not belong to the CA certificate",
    );
    std::fs::write(ca.join("ca.key"), own_key).unwrap();
    std::fs::write(ca.join("ca.key"), "garbage\n").unwrap();
    fails(
        &["cert", "new", "--ca-dir", s(&ca), "--mac", "random", "--out", &out],
        "ca.key: no private key found",
    );
    std::fs::write(
        p.join("junk.csr"),
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
    )
    .unwrap();
    let ca2 = p.join("ca2");
    ok(&["ca", "new", "--dir", s(&ca2)]);
    fails(
        &["cert", "sign", "--ca-dir", s(&ca2), "--csr", s(&p.join("junk.csr")), "--out", &out],
        "junk.csr: not a valid certificate signing request",
    );
    fails(
        &["cert", "sign", "--ca-dir", s(&ca2), "--csr", s(&p.join("missing.csr")), "--out", &out],
        "missing.csr: cannot read",
    );
    // a request whose CN is not a MAC
    openssl(
        p,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "h.key",
            "-out",
            "h.csr",
            "-subj",
            "/CN=host1",
        ],
    );
    fails(
        &["cert", "sign", "--ca-dir", s(&ca2), "--csr", s(&p.join("h.csr")), "--out", &out],
        "\"host1\" is not a MAC address",
    );
    fails(&["cert", "show", s(&p.join("h.key"))], "no certificate in this file");
    fails(&["cert", "show"], "usage: invpnctl cert show FILE");
    fails(&["cert", "frob"], "unknown `cert` action");
    fails(&["ca", "old"], "unknown `ca` action");
    fails(&["frobnicate"], "unknown command");
    fails(&[], "no command");
}

fn json(args: &[&str]) -> serde_json::Value {
    let out = ok(args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("invpnctl {}: {e}: {out}", args.join(" ")))
}

/// `cert verify`: (exit status, stdout, the labels of the reasons from --json).
fn verify(args: &[&str]) -> (i32, String, Vec<String>) {
    let (code, out, err) = invpnctl(&[&["cert", "verify"], args].concat());
    let mut with_json = vec!["--json", "cert", "verify"];
    with_json.extend_from_slice(args);
    let (jcode, jout, _) = invpnctl(&with_json);
    assert_eq!(code, jcode, "{args:?}: {err}");
    let v: serde_json::Value =
        serde_json::from_str(&jout).unwrap_or_else(|e| panic!("{e}: {jout}"));
    assert_eq!(v["valid"], serde_json::Value::Bool(code == 0), "{jout}");
    let labels = v["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["label"].as_str().unwrap().to_string())
        .collect();
    (code, out, labels)
}

/// A node certificate signed by the CA in `ca_dir`, made with rcgen
/// directly: CN `cn`, these extended key usages, valid over `days` (from
/// now, may be negative).
fn odd_cert(
    ca_dir: &Path,
    out: &Path,
    cn: &str,
    eku: Vec<rcgen::ExtendedKeyUsagePurpose>,
    days: (i64, i64),
) {
    let ca = invpn::pki::load_ca(ca_dir).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(
        &ca.cert_pem,
        rcgen::KeyPair::from_pem(&ca.key_pem).unwrap(),
    )
    .unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.is_ca = rcgen::IsCa::ExplicitNoCa;
    p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = eku;
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now + time::Duration::days(days.0);
    p.not_after = now + time::Duration::days(days.1);
    let kp = rcgen::KeyPair::generate().unwrap();
    std::fs::write(out, p.signed_by(&kp, &issuer).unwrap().pem()).unwrap();
}

#[test]
fn cert_verify_says_valid_or_why_not_with_an_exit_status() {
    use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let (ca, other) = (p.join("ca"), p.join("other"));
    ok(&["ca", "new", "--dir", s(&ca), "--name", "Verify CA"]);
    ok(&["ca", "new", "--dir", s(&other), "--name", "Other CA"]);
    let ca_crt = ca.join("ca.crt");
    let n1 = p.join("n1");
    ok(&["cert", "new", "--ca-dir", s(&ca), "--mac", "02:50:56:00:00:21", "--out", s(&n1)]);
    let n1_crt = p.join("n1.crt");

    let (code, out, labels) = verify(&[s(&n1_crt), "--ca", s(&ca_crt)]);
    assert_eq!((code, labels.len()), (0, 0), "{out}");
    assert!(out.contains("valid: node 02:50:56:00:00:21"), "{out}");
    // global options after the command; the fields in --json
    let v = json(&["cert", "verify", s(&n1_crt), "--ca", s(&ca_crt), "--json"]);
    assert_eq!(v["certificate"]["mac"], "02:50:56:00:00:21");
    assert_eq!(
        v["certificate"]["extended_key_usage"],
        serde_json::json!(["serverAuth", "clientAuth"])
    );
    assert!(v["warnings"].as_array().unwrap().is_empty(), "{v}");

    // the CA from -c CONF's [ssl] ca
    let conf = p.join("invpn.conf");
    std::fs::write(
        &conf,
        format!(
            "[ssl]\nkey={}\ncert={}\nca={}\n[network]\ncache=c\n",
            s(&p.join("n1.key")),
            s(&n1_crt),
            s(&ca_crt)
        ),
    )
    .unwrap();
    let out = ok(&["-c", s(&conf), "cert", "verify", s(&n1_crt)]);
    assert!(out.contains("signed by the CA") && !out.contains("no-ca"), "{out}");
    // without any CA: valid as far as it goes, with a warning
    let (code, out, _) = verify(&[s(&n1_crt)]);
    assert_eq!(code, 0);
    assert!(out.contains("warning: no-ca:"), "{out}");

    // invalid, each with its label on a line of its own
    let (code, out, labels) = verify(&[s(&n1_crt), "--ca", s(&other.join("ca.crt"))]);
    assert_eq!((code, labels), (1, vec!["unknown-issuer".to_string()]), "{out}");
    assert!(out.contains("INVALID\nunknown-issuer: not signed by the CA"), "{out}");

    let expired = p.join("expired.crt");
    odd_cert(&ca, &expired, "02:50:56:00:00:22", vec![ServerAuth, ClientAuth], (-10, -2));
    let (code, out, labels) = verify(&[s(&expired), "--ca", s(&ca_crt)]);
    assert_eq!((code, labels), (1, vec!["expired".to_string()]), "{out}");
    assert!(out.contains("expired: the certificate expired on"), "{out}");

    let future = p.join("future.crt");
    odd_cert(&ca, &future, "02:50:56:00:00:23", vec![ServerAuth, ClientAuth], (2, 10));
    assert_eq!(verify(&[s(&future), "--ca", s(&ca_crt)]).2, ["not-yet-valid"]);

    let host = p.join("host.crt");
    odd_cert(&ca, &host, "host1", vec![ServerAuth, ClientAuth], (-1, 10));
    let (code, out, labels) = verify(&[s(&host), "--ca", s(&ca_crt)]);
    assert_eq!((code, labels), (1, vec!["cn-not-mac".to_string()]), "{out}");
    let multicast = p.join("multicast.crt");
    odd_cert(&ca, &multicast, "01:00:5e:00:00:01", vec![ServerAuth, ClientAuth], (-1, 10));
    assert_eq!(verify(&[s(&multicast), "--ca", s(&ca_crt)]).2, ["cn-not-mac"]);

    let server_only = p.join("server-only.crt");
    odd_cert(&ca, &server_only, "02:50:56:00:00:24", vec![ServerAuth], (-1, 10));
    let (code, out, labels) = verify(&[s(&server_only), "--ca", s(&ca_crt)]);
    assert_eq!((code, labels), (1, vec!["no-client-auth".to_string()]), "{out}");
    let client_only = p.join("client-only.crt");
    odd_cert(&ca, &client_only, "02:50:56:00:00:25", vec![ClientAuth], (-1, 10));
    assert_eq!(verify(&[s(&client_only), "--ca", s(&ca_crt)]).2, ["no-server-auth"]);

    // several problems at once are all reported
    let both = p.join("both.crt");
    odd_cert(&other, &both, "host2", vec![ServerAuth], (-10, -1));
    let (code, _, labels) = verify(&[s(&both), "--ca", s(&ca_crt)]);
    assert_eq!(code, 1);
    for want in ["expired", "cn-not-mac", "no-client-auth", "unknown-issuer"] {
        assert!(labels.iter().any(|l| l == want), "{want} not in {labels:?}");
    }
    // a CA certificate is not a node's
    assert_eq!(verify(&[s(&ca_crt), "--ca", s(&ca_crt)]).0, 1);

    // soon expiring: valid, with a warning
    let soon = p.join("soon");
    ok(&["cert", "new", "--ca-dir", s(&ca), "--mac", "random", "--out", s(&soon), "--days", "10"]);
    let (code, out, _) = verify(&[s(&p.join("soon.crt")), "--ca", s(&ca_crt)]);
    assert_eq!(code, 0);
    assert!(out.contains("warning: expires-soon:"), "{out}");

    // usage errors and unreadable files: 2
    ok(&["cert", "request", "--mac", "random", "--out", s(&p.join("req"))]);
    for (args, want) in [
        (vec!["cert", "verify"], "usage: invpnctl cert verify FILE"),
        (vec!["cert", "verify", s(&n1_crt), "--bogus"], "Unrecognized option"),
        (vec!["cert", "verify", s(&p.join("missing.crt"))], "missing.crt: cannot read"),
        (vec!["cert", "verify", s(&n1_crt), "--ca", s(&p.join("none"))], "none: cannot read"),
        (vec!["cert", "verify", s(&n1_crt), "--crl", s(&ca_crt)], "no X509 CRL"),
        (vec!["cert", "verify", s(&p.join("req.csr"))], "a certificate signing request"),
    ] {
        let (code, _, err) = invpnctl(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.starts_with("invpnctl: ") && err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn cert_verify_checks_revocation_lists() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let (ca, other) = (p.join("ca"), p.join("other"));
    ok(&["ca", "new", "--dir", s(&ca), "--name", "CRL CA"]);
    ok(&["ca", "new", "--dir", s(&other), "--name", "Other CRL CA"]);
    let ca_crt = ca.join("ca.crt");
    for n in ["good", "bad"] {
        ok(&["cert", "new", "--ca-dir", s(&ca), "--mac", "random", "--out", s(&p.join(n))]);
    }
    let (good, bad) = (p.join("good.crt"), p.join("bad.crt"));
    let serial = json(&["cert", "show", "--json", s(&bad)])["certificates"][0]["serial"]
        .as_str()
        .unwrap()
        .to_string();
    let list = crl(&ca, &[&serial]);
    std::fs::write(p.join("ca.crl.pem"), list.pem().unwrap()).unwrap();
    std::fs::write(p.join("ca.crl.der"), list.der().as_ref()).unwrap();
    for file in ["ca.crl.pem", "ca.crl.der"] {
        let crl = p.join(file);
        let (code, out, _) = verify(&[s(&good), "--ca", s(&ca_crt), "--crl", s(&crl)]);
        assert_eq!(code, 0, "{file}: {out}");
        let (code, out, labels) = verify(&[s(&bad), "--ca", s(&ca_crt), "--crl", s(&crl)]);
        assert_eq!((code, labels), (1, vec!["revoked".to_string()]), "{file}: {out}");
    }
    // a list from another CA says nothing about these certificates
    std::fs::write(p.join("other.crl"), crl(&other, &[]).pem().unwrap()).unwrap();
    let (code, _, labels) =
        verify(&[s(&good), "--ca", s(&ca_crt), "--crl", s(&p.join("other.crl"))]);
    assert_eq!((code, labels), (1, vec!["revocation-unknown".to_string()]));
}

#[test]
fn cert_show_reads_requests_and_every_cert_command_speaks_json() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let ca = p.join("ca");
    let v = json(&["--json", "ca", "new", "--dir", s(&ca), "--name", "JSON CA"]);
    assert_eq!(v["written"][0]["path"], s(&ca.join("ca.crt")));
    assert_eq!(v["certificate"]["is_ca"], true);
    let v = json(&[
        "cert",
        "new",
        "--ca-dir",
        s(&ca),
        "--mac",
        "02:50:56:00:00:31",
        "--out",
        s(&p.join("n")),
        "--json",
    ]);
    assert_eq!(v["certificate"]["mac"], "02:50:56:00:00:31");
    assert_eq!(v["written"][1]["path"], s(&p.join("n.key")));
    let v = json(&[
        "cert",
        "request",
        "--json",
        "--mac",
        "02:50:56:00:00:32",
        "--out",
        s(&p.join("r")),
    ]);
    assert_eq!(v["request"]["mac"], "02:50:56:00:00:32");
    assert_eq!(v["request"]["signature_valid"], true);

    let out = ok(&["cert", "show", s(&p.join("r.csr"))]);
    for want in [
        "certificate signing request:",
        "MAC:          02:50:56:00:00:32",
        "subject:      CN=02:50:56:00:00:32",
        "key:          ECDSA P-256",
        "signature:    valid",
    ] {
        assert!(out.contains(want), "{want:?} not in\n{out}");
    }
    let v = json(&["cert", "show", s(&p.join("r.csr")), "--json"]);
    assert_eq!(
        (v["kind"].as_str(), v["request"]["mac"].as_str()),
        (Some("request"), Some("02:50:56:00:00:32"))
    );

    let v = json(&[
        "cert",
        "sign",
        "--ca-dir",
        s(&ca),
        "--csr",
        s(&p.join("r.csr")),
        "--out",
        s(&p.join("r.crt")),
        "--json",
    ]);
    assert_eq!(v["certificate"]["mac"], "02:50:56:00:00:32");
    assert_eq!(v["certificate"]["issuer"], "CN=JSON CA");
    let v = json(&["--json", "cert", "show", s(&p.join("r.crt"))]);
    assert_eq!(v["kind"], "certificates");
    assert_eq!(
        v["certificates"][0]["key_usage"],
        serde_json::json!(["digitalSignature", "keyEncipherment"])
    );
    let out = ok(&["cert", "show", s(&p.join("r.crt"))]);
    assert!(
        out.contains("ext. usage:   serverAuth, clientAuth") && out.contains("serial:"),
        "{out}"
    );
    let v = json(&["cert", "verify", s(&p.join("r.crt")), "--json", "--ca", s(&ca.join("ca.crt"))]);
    assert_eq!(v["valid"], true);
}

#[test]
fn help_for_each_command_and_completion_from_the_same_table() {
    let usage = ok(&["--help"]);
    assert_eq!(usage, ok(&["help"]));
    let (code, _, err) = invpnctl(&[]);
    assert!(code == 1 && err.contains("no command"), "{err}");
    for c in invpn::ctl::commands::COMMANDS {
        assert!(usage.contains(&format!("  {}", c.name)), "{} not in\n{usage}", c.name);
        let words: Vec<&str> = c.name.split(' ').collect();
        let help = ok(&[&["help"], &words[..]].concat());
        assert!(help.starts_with(&format!("Usage: invpnctl {}", c.name)), "{help}");
        for o in c.options {
            assert!(help.contains(&format!("--{}", o.long)), "{}: --{}\n{help}", c.name, o.long);
        }
        assert_eq!(ok(&[&words[..], &["--help"]].concat()), help, "{} --help", c.name);
    }
    let cert = ok(&["help", "cert"]);
    assert!(
        cert.contains("cert verify FILE [--ca FILE]") && cert.contains("cert show FILE"),
        "{cert}"
    );
    assert_eq!(ok(&["cert", "--help"]), cert);
    let verify = ok(&["cert", "verify", "--help"]);
    assert!(
        verify.contains("Usage: invpnctl cert verify FILE") && verify.contains("--crl FILE"),
        "{verify}"
    );
    fails(&["help", "frob"], "unknown command");
    fails(&["help", "cert", "frob"], "unknown `cert` action");

    // completion: every command and option, and scripts the shells accept
    for shell in ["bash", "zsh"] {
        let script = ok(&["completion", shell]);
        for c in invpn::ctl::commands::COMMANDS {
            for w in c.name.split(' ') {
                assert!(script.contains(w), "{shell}: {w} missing");
            }
            for o in c.options {
                assert!(script.contains(&format!("--{}", o.long)), "{shell}: --{}", o.long);
            }
        }
        if let Ok(out) = Command::new(shell).arg("-n").arg("-c").arg(&script).output() {
            assert!(out.status.success(), "{shell} -n: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    // bash completes from it as expected
    let script = ok(&["completion", "bash"]);
    for (line, want) in [
        ("invpnctl cert ve", "verify"),
        ("invpnctl --json cert verify --c", "--config --ca --crl"),
        ("invpnctl --socket /x st", "status"),
        ("invpnctl cert new --key-type p3", "p384"),
        ("invpnctl completion ", "bash zsh"),
    ] {
        let probe = format!(
            "{script}\nread -ra COMP_WORDS <<< {line:?}\n[[ {line:?} == *' ' ]] && COMP_WORDS+=('')\n\
             COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))\n_invpnctl\necho \"${{COMPREPLY[*]}}\"\n"
        );
        if let Ok(out) = Command::new("bash").arg("-c").arg(&probe).output() {
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want, "{line:?}");
        }
    }
    fails(&["completion", "fish"], "usage: invpnctl completion bash|zsh");
    // global options after the command reach the query commands too
    let (code, _, err) = invpnctl(&["status", "--socket", "/nonexistent/invpnd.sock"]);
    assert!(code == 1 && err.contains("/nonexistent/invpnd.sock"), "{err}");
}
