//! `invpnctl ca|cert ...`: certificates without openssl, checked with
//! invpnd itself and with openssl; every bad input is one clear error.

mod common;

use common::{invpnctl, openssl};

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
