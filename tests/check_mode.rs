//! `invpnd -t`: configurations, certificates and keys checked without
//! touching the network, including the RSA keys 0.4's openssl commands
//! make. Every refusal is one clear line naming the file, and exit status 1.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{invpnd, mac, openssl, Pki};
use invpn::pki::{self, KeyType, Validity};

fn write_conf(dir: &Path, key: &Path, cert: &Path, ca: &Path, extra: &str) -> PathBuf {
    write_conf_cache(dir, key, cert, ca, Path::new("cache"), extra)
}

/// A configuration whose `cache` (line 6) is `cache`.
fn write_conf_cache(
    dir: &Path,
    key: &Path,
    cert: &Path,
    ca: &Path,
    cache: &Path,
    extra: &str,
) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let p = dir.join(format!("invpn{n}.conf"));
    std::fs::write(
        &p,
        format!(
            "[ssl]\nkey={}\ncert={}\nca={}\n[network]\ncache={}\n{extra}",
            key.display(),
            cert.display(),
            ca.display(),
            cache.display()
        ),
    )
    .unwrap();
    p
}

/// A CA and a node made with openssl the way 0.4's INSTALL says (RSA,
/// `openssl x509 -req` with `-extfile` so that they are X.509 v3).
/// `openssl x509 -req`: the request `req` in `dir` signed by `ca.crt` /
/// `ca.key` there for `days` into `out`, with the extensions of section
/// `ext.1` of file `ext.0` (none: an X.509 v1 certificate).
fn openssl_sign(dir: &Path, req: &str, out: &str, days: &str, ext: Option<(&str, &str)>) {
    let mut args = vec!["x509", "-req", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial"];
    if let Some((file, section)) = ext {
        args.extend(["-extfile", file, "-extensions", section]);
    }
    args.extend(["-days", days, "-in", req, "-out", out]);
    openssl(dir, &args);
}

fn openssl_pki(dir: &Path, key_cmd: &[&str]) {
    std::fs::write(
        dir.join("v3.cnf"),
        "[v3_ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n\
         subjectKeyIdentifier=hash\n[v3_notca]\nbasicConstraints=CA:FALSE\nnsCertType=client,server\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.req",
            "-subj",
            "/CN=invpn CA",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-signkey",
            "ca.key",
            "-extfile",
            "v3.cnf",
            "-extensions",
            "v3_ca",
            "-set_serial",
            "0",
            "-days",
            "30",
            "-in",
            "ca.req",
            "-out",
            "ca.crt",
        ],
    );
    openssl(dir, key_cmd);
    openssl(
        dir,
        &["req", "-new", "-key", "node.key", "-out", "node.req", "-subj", "/CN=02:50:56:00:00:01"],
    );
    openssl_sign(dir, "node.req", "node.crt", "30", Some(("v3.cnf", "v3_notca")));
}

#[test]
fn rsa_keys_as_invpn04_made_them_are_accepted() {
    for (what, cmd, want) in [
        ("PKCS#1", vec!["genrsa", "-traditional", "-out", "node.key", "4096"], "RSA 4096"),
        (
            "PKCS#8",
            vec![
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                "node.key",
            ],
            "RSA 2048",
        ),
        (
            "SEC1 P-384",
            vec!["ecparam", "-name", "secp384r1", "-genkey", "-noout", "-out", "node.key"],
            "ECDSA P-384",
        ),
        ("Ed25519", vec!["genpkey", "-algorithm", "ED25519", "-out", "node.key"], "Ed25519"),
    ] {
        let d = tempfile::tempdir().unwrap();
        openssl_pki(d.path(), &cmd);
        if what == "PKCS#1" {
            assert!(std::fs::read_to_string(d.path().join("node.key"))
                .unwrap()
                .contains("BEGIN RSA PRIVATE KEY"));
        }
        let conf = write_conf(
            d.path(),
            Path::new("node.key"),
            Path::new("node.crt"),
            Path::new("ca.crt"),
            "",
        );
        let (code, out, err) = invpnd(&["-t", "-c", conf.to_str().unwrap()]);
        assert_eq!(code, 0, "{what}: {err}");
        assert!(out.contains("node MAC:        02:50:56:00:00:01"), "{what}: {out}");
        assert!(out.contains(want), "{what}: want {want} in {out}");
    }
}

#[test]
fn bad_configurations_and_credentials_fail_with_one_clear_line() {
    let pki = Pki::new();
    let d = pki.dir.path();
    let (cert, key) = pki.node("good", mac(1));
    let ca = pki.ca_path();
    let other = Pki::new();
    let (ocert, okey) = other.node("other", mac(1));
    let t = time::OffsetDateTime::now_utc();
    let mk = |name: &str, cn: &str, v: Validity| {
        pki.write(name, &pki::issue(&pki.ca, cn, v, KeyType::EcdsaP256).unwrap())
    };
    let (xcert, xkey) = mk(
        "expired",
        "02:50:56:00:00:01",
        Validity {
            not_before: t - time::Duration::days(9),
            not_after: t - time::Duration::days(1),
        },
    );
    let (fcert, fkey) = mk(
        "future",
        "02:50:56:00:00:01",
        Validity {
            not_before: t + time::Duration::days(1),
            not_after: t + time::Duration::days(9),
        },
    );
    let (ncert, nkey) = mk("named", "gateway", Validity::days_from_now(9));
    let (_, key2) = pki.node("second", mac(2));
    // an X.509 v1 certificate, as `openssl x509 -req` makes without -extfile
    openssl(d, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "v1.key"]);
    openssl(
        d,
        &["req", "-new", "-key", "v1.key", "-out", "v1.req", "-subj", "/CN=02:50:56:00:00:01"],
    );
    std::fs::write(d.join("ca.key"), &pki.ca.key_pem).unwrap();
    openssl_sign(d, "v1.req", "v1.crt", "9", None);
    std::fs::write(d.join("garbage.pem"), "not a pem file\n").unwrap();
    let missing = d.join("missing.key");

    let good = |extra: &str| write_conf(d, &key, &cert, &ca, extra);
    let creds = |k: &Path, c: &Path, a: &Path| write_conf(d, k, c, a, "");
    let cases: Vec<(&str, PathBuf, Vec<&str>)> = vec![
        ("missing config", d.join("nope.conf"), vec!["nope.conf: cannot read"]),
        ("missing key", creds(&missing, &cert, &ca), vec!["missing.key: cannot read"]),
        (
            "key is not a key",
            creds(&d.join("garbage.pem"), &cert, &ca),
            vec!["garbage.pem", "no private key"],
        ),
        (
            "cert is not a cert",
            creds(&key, &d.join("garbage.pem"), &ca),
            vec!["garbage.pem", "no certificate"],
        ),
        (
            "key of another node",
            creds(&key2, &cert, &ca),
            vec!["second.key", "does not belong to the certificate"],
        ),
        (
            "other CA",
            creds(&okey, &ocert, &ca),
            vec!["other.crt", "not signed by the network's CA"],
        ),
        ("CN not a MAC", creds(&nkey, &ncert, &ca), vec!["named.crt", "\"gateway\" is not a MAC"]),
        ("expired", creds(&xkey, &xcert, &ca), vec!["expired.crt", "expired"]),
        ("not yet valid", creds(&fkey, &fcert, &ca), vec!["future.crt", "not valid yet"]),
        ("X.509 v1", creds(&d.join("v1.key"), &d.join("v1.crt"), &ca), vec!["v1.crt", "X.509 v1"]),
        ("malformed init", good("init=02:50:56:00:00:02\n"), vec![".conf:7: [network] init"]),
        ("bad MTU", good("[interface]\nmtu=99999\n"), vec![".conf:8: [interface] mtu"]),
        ("duplicate key", good("port=1\nport=2\n"), vec![".conf:8: [network] port: given twice"]),
        ("bad port", good("port=http\n"), vec![".conf:7: [network] port"]),
        ("bad boolean", good("no_relay=sometimes\n"), vec![".conf:7: [network] no_relay"]),
        ("bad bind", good("bind=198.18.0.300\n"), vec![".conf:7: [network] bind"]),
        (
            "congestion control not a name",
            good("congestion=bbr/2\n"),
            vec![".conf:7: [network] congestion", "expected `system` or the name"],
        ),
        (
            "congestion control the kernel lacks",
            good("\ncongestion=no_such_cc\n"),
            vec![".conf:8: [network] congestion", "no TCP congestion control \"no_such_cc\""],
        ),
        ("syntax", good("this is not ini\n"), vec![".conf:7: expected `key = value`"]),
        (
            "CA is not a CA file",
            creds(&key, &cert, &d.join("garbage.pem")),
            vec!["garbage.pem", "no certificate"],
        ),
    ];
    assert!(cases.len() >= 15);
    for (what, conf, wants) in cases {
        let (code, out, err) = invpnd(&["-t", "-c", conf.to_str().unwrap()]);
        assert_eq!(code, 1, "{what}: exit {code}\n{out}{err}");
        assert_eq!(err.lines().count(), 1, "{what}: one line, got {err:?}");
        assert!(err.starts_with("invpnd: "), "{what}: {err}");
        for w in wants {
            assert!(err.contains(w), "{what}: {w:?} not in {err:?}");
        }
    }
}

/// Issue 12's operator mistakes: each is one line naming the file and the
/// line of the setting that names it, and exit status 1.
#[test]
fn operator_mistakes_fail_with_file_and_line() {
    let pki = Pki::new();
    let d = pki.dir.path();
    let (cert, key) = pki.node("good", mac(1));
    let ca = pki.ca_path();
    std::fs::write(d.join("ca.key"), &pki.ca.key_pem).unwrap();
    // node certificates for TLS servers only, clients only, and neither
    // (openssl x509 -req -extfile: X.509 v3)
    openssl(d, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "eku.key"]);
    openssl(
        d,
        &["req", "-new", "-key", "eku.key", "-out", "eku.req", "-subj", "/CN=02:50:56:00:00:01"],
    );
    for (name, eku) in
        [("server", "serverAuth"), ("client", "clientAuth"), ("email", "emailProtection")]
    {
        let cnf = format!("{name}.cnf");
        std::fs::write(
            d.join(&cnf),
            format!("[e]\nbasicConstraints=CA:FALSE\nextendedKeyUsage={eku}\n"),
        )
        .unwrap();
        let crt = format!("{name}.crt");
        openssl_sign(d, "eku.req", &crt, "9", Some((&cnf, "e")));
    }
    // the key, encrypted with a passphrase: PKCS#8, and the traditional
    // form with Proc-Type
    let k = key.to_str().unwrap();
    openssl(d, &["pkcs8", "-topk8", "-in", k, "-out", "enc.key", "-passout", "pass:x"]);
    openssl(d, &["ec", "-in", k, "-aes128", "-out", "enc2.key", "-passout", "pass:x"]);
    assert!(std::fs::read_to_string(d.join("enc2.key")).unwrap().contains("Proc-Type: 4,ENC"));
    std::fs::write(d.join("notes.txt"), "things to do\n").unwrap();
    let crl_pem = common::crl(d, &[]).pem().unwrap();
    std::fs::write(d.join("ca.crl"), &crl_pem).unwrap();

    let cached = |cache: &Path| write_conf_cache(d, &key, &cert, &ca, cache, "");
    let own = write_conf_cache(d, &key, &cert, &ca, Path::new("PLACEHOLDER"), "");
    let text = std::fs::read_to_string(&own).unwrap();
    std::fs::write(&own, text.replace("PLACEHOLDER", own.file_name().unwrap().to_str().unwrap()))
        .unwrap();
    let cases: Vec<(&str, PathBuf, Vec<&str>)> = vec![
        ("cache is the key", cached(&key), vec![".conf:6: [network] cache:", "private key"]),
        ("cache is the cert", cached(&cert), vec![".conf:6: [network] cache:", "certificate"]),
        ("cache is the CA", cached(Path::new("ca.crt")), vec![".conf:6: [network] cache:", "CA"]),
        ("cache is the configuration", own, vec![".conf:6: [network] cache:", "configuration"]),
        (
            "cache is some other file",
            cached(&d.join("notes.txt")),
            vec![".conf:6: [network] cache:", "is not a node cache"],
        ),
        (
            "cache is the CRL",
            write_conf_cache(d, &key, &cert, &ca, &d.join("ca.crl"), "[ssl]\ncrl=ca.crl\n"),
            vec![".conf:6: [network] cache:", "revocation list"],
        ),
        (
            "cache directory missing",
            cached(&d.join("missing/invpn.cache")),
            vec![".conf:6: [network] cache:", "its directory", "missing"],
        ),
    ];
    // the credentials: checked by -t and at start alike (no root needed
    // to get that far)
    let eku = |name: &str| write_conf(d, &d.join("eku.key"), &d.join(name), &ca, "");
    let credentials: Vec<(&str, PathBuf, Vec<&str>)> = vec![
        (
            "encrypted key",
            write_conf(d, &d.join("enc.key"), &cert, &ca, ""),
            vec![".conf:2: [ssl] key: ", "enc.key: encrypted: invpnd needs an unencrypted key"],
        ),
        (
            "encrypted key, traditional PEM",
            write_conf(d, &d.join("enc2.key"), &cert, &ca, ""),
            vec![".conf:2: [ssl] key: ", "enc2.key: encrypted: ", "openssl pkey -in "],
        ),
        (
            "CA file holds a node certificate",
            write_conf(d, &key, &cert, &cert, ""),
            vec![".conf:4: [ssl] ca: ", "good.crt", "is not a CA certificate"],
        ),
        (
            "extendedKeyUsage without clientAuth",
            eku("server.crt"),
            vec![".conf:3: [ssl] cert: ", "server.crt", "lacks clientAuth: peers refuse it when"],
        ),
        (
            "extendedKeyUsage without serverAuth",
            eku("client.crt"),
            vec![".conf:3: [ssl] cert: ", "client.crt", "lacks serverAuth: peers refuse it when"],
        ),
        (
            "extendedKeyUsage with neither",
            eku("email.crt"),
            vec![".conf:3: [ssl] cert: ", "lacks clientAuth and serverAuth", "links would fail"],
        ),
        (
            "key of another certificate",
            write_conf(d, &d.join("eku.key"), &cert, &ca, ""),
            vec![".conf:2: [ssl] key: ", "eku.key: this key does not belong to"],
        ),
        (
            "certificate missing",
            write_conf(d, &key, &d.join("nothing.crt"), &ca, ""),
            vec![".conf:3: [ssl] cert: ", "nothing.crt: cannot read"],
        ),
    ];
    for (what, conf, wants) in cases.iter().chain(&credentials) {
        let (code, out, err) = invpnd(&["-t", "-c", conf.to_str().unwrap()]);
        assert_eq!(code, 1, "{what}: exit {code}\n{out}{err}");
        assert_eq!(err.lines().count(), 1, "{what}: one line, got {err:?}");
        for w in wants {
            assert!(err.contains(w), "{what}: {w:?} not in {err:?}");
        }
    }
    for (what, conf, wants) in &credentials {
        let (code, _, err) = invpnd(&["-c", conf.to_str().unwrap()]);
        assert_eq!(code, 1, "{what} at start: exit {code}\n{err}");
        for w in wants {
            assert!(err.contains(w), "{what} at start: {w:?} not in {err:?}");
        }
    }
    // a missing cache directory stops the daemon itself too, before it
    // touches anything (no root needed to get that far)
    let conf = cached(&d.join("missing/invpn.cache"));
    let (code, _, err) = invpnd(&["-c", conf.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(".conf:6: [network] cache:") && err.contains("its directory"), "{err}");
    // nothing was overwritten
    assert_eq!(std::fs::read_to_string(d.join("ca.crl")).unwrap(), crl_pem);
    assert!(std::fs::read_to_string(&key).unwrap().contains("PRIVATE KEY"));
    assert_eq!(std::fs::read_to_string(d.join("notes.txt")).unwrap(), "things to do\n");
    // an invpn 0.4 cache, mangled keys and all, is a cache
    std::fs::write(
        d.join("old.cache"),
        "[General]\n02%3A50%3A56%3A00%3A00%3A02=198.18.0.2, 47742\n%3A%3A=, 0\n",
    )
    .unwrap();
    let (code, out, err) = invpnd(&["-t", "-c", cached(&d.join("old.cache")).to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("old.cache (1 nodes)"), "{out}");

    // an unwritable directory (root may write anywhere)
    if running_as_root() {
        return;
    }
    let ro = d.join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    let (code, _, err) = invpnd(&["-t", "-c", cached(&ro.join("c")).to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(".conf:6: [network] cache:") && err.contains("not writable"), "{err}");
}

fn running_as_root() -> bool {
    common::run("id", &["-u"]).trim() == "0"
}

#[test]
fn key_readable_by_others_draws_a_warning() {
    let pki = Pki::new();
    let (cert, key) = pki.node("n", mac(1));
    let conf = write_conf(pki.dir.path(), &key, &cert, &pki.ca_path(), "");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, out, _) = invpnd(&["-t", "-c", conf.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        out.contains("warning: ")
            && out.contains(".conf:2: [ssl] key: ")
            && out.contains("n.key: permissions 0644 are too open"),
        "{out}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, out, _) = invpnd(&["-t", "-c", conf.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(!out.contains("too open"), "{out}");
}

/// 0.4's files, as Qt wrote and read them, pass `-t` unchanged.
#[test]
fn qt_ini_configuration_of_invpn04() {
    let pki = Pki::new();
    let (cert, key) = pki.node("n", mac(1));
    let conf = pki.path("qt.conf");
    let text = format!(
        "\u{feff}[ssl] ; credentials\nkey={} ; the key\ncert=\"{}\"\nca={}\n\
         # r\u{e9}seau\n[network]\ncache=invpn.cache ; nodes\n",
        key.display(),
        cert.display(),
        pki.ca_path().display()
    );
    // the comment in Latin-1, as an old editor saved it
    let bytes = text.into_bytes();
    let at = bytes.windows(2).position(|w| w == "\u{e9}".as_bytes()).unwrap();
    let bytes = [&bytes[..at], b"\xE9", &bytes[at + 2..]].concat();
    std::fs::write(&conf, bytes).unwrap();
    let (code, out, err) = invpnd(&["-t", "-c", conf.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("node MAC:        02:50:56:00:00:01"), "{out}");
    assert!(out.contains("invpn.cache (not created yet)"), "{out}");
}

/// Runs `exe args` with standard output into a pipe whose reader is gone;
/// its standard error and status.
fn to_closed_pipe(exe: &str, args: &[&str]) -> (String, Option<i32>) {
    // a pipe whose reading end is closed: `true` had it and exited
    let mut reader =
        std::process::Command::new("true").stdin(std::process::Stdio::piped()).spawn().unwrap();
    let pipe = reader.stdin.take().unwrap();
    reader.wait().unwrap();
    let out = std::process::Command::new(exe).args(args).stdout(pipe).output().unwrap();
    (String::from_utf8_lossy(&out.stderr).into_owned(), out.status.code())
}

/// `invpnd -t | head -2`, `invpnctl help | head -2`: a reader that goes
/// away ends the output quietly, with status 0 (as ripgrep does).
#[test]
fn output_to_a_closed_pipe() {
    let pki = Pki::new();
    let (cert, key) = pki.node("n", mac(1));
    let conf = write_conf(pki.dir.path(), &key, &cert, &pki.ca_path(), "");
    let conf = conf.to_str().unwrap();
    let (invpnd, invpnctl) = (env!("CARGO_BIN_EXE_invpnd"), env!("CARGO_BIN_EXE_invpnctl"));
    let cert = cert.to_str().unwrap();
    for (exe, args) in [
        (invpnd, vec!["-t", "-c", conf]),
        (invpnd, vec!["--help"]),
        (invpnctl, vec!["help"]),
        (invpnctl, vec!["help", "cert", "sign"]),
        (invpnctl, vec!["--version"]),
        (invpnctl, vec!["completion", "bash"]),
        (invpnctl, vec!["cert", "show", cert]),
        (invpnctl, vec!["cert", "show", "--json", cert]),
        (invpnctl, vec!["cert", "verify", "--ca", pki.ca_path().to_str().unwrap(), cert]),
    ] {
        let (err, code) = to_closed_pipe(exe, &args);
        assert!(err.is_empty(), "{exe} {args:?}: {err}");
        assert_eq!(code, Some(0), "{exe} {args:?}: {err}");
    }
    // the same through a shell, with a reader that reads two lines
    let out = std::process::Command::new("bash")
        .args(["-c", &format!("{invpnd} -t -c {conf} | head -2; exit ${{PIPESTATUS[0]}}")])
        .output()
        .unwrap();
    let (text, err) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!((out.status.code(), text.lines().count()), (Some(0), 2), "{text}{err}");
    assert!(err.is_empty(), "{err}");
}

#[test]
fn unknown_keys_warn_but_pass() {
    let pki = Pki::new();
    let (cert, key) = pki.node("n", mac(1));
    let conf = write_conf(pki.dir.path(), &key, &cert, &pki.ca_path(), "colour=blue\n");
    let (code, out, _) = invpnd(&["-t", "-c", conf.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        out.contains("warning: ") && out.contains(".conf:7: [network] colour: unknown key"),
        "{out}"
    );
}

/// `[network] congestion` is tried on a socket and shown: reno is in
/// every kernel; the default is bbr where the kernel has it.
#[test]
fn congestion_control_is_checked_and_shown() {
    let pki = Pki::new();
    let (cert, key) = pki.node("n", mac(1));
    let d = pki.dir.path();
    for (extra, want) in [
        ("congestion = reno\n", "TCP congestion:  reno (configured)\n".to_string()),
        ("", "TCP congestion:  bbr (default)\n".to_string()),
        (
            "congestion = system\n",
            format!(
                "TCP congestion:  {} (system default)\n",
                std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control")
                    .unwrap()
                    .trim()
            ),
        ),
    ] {
        let conf = write_conf(d, &key, &cert, &pki.ca_path(), extra);
        let (code, out, err) = invpnd(&["-t", "-c", conf.to_str().unwrap()]);
        assert_eq!(code, 0, "{err}");
        // without bbr in the kernel: the system's default, and why
        let fallback = extra.is_empty() && out.contains("(system default; bbr unavailable: ");
        assert!(fallback || out.contains(&want), "{extra:?}: {want:?} not in\n{out}");
    }
}

#[test]
fn command_line() {
    let (code, out, _) = invpnd(&["-V"]);
    assert_eq!((code, out.trim()), (0, format!("invpnd {}", env!("CARGO_PKG_VERSION")).as_str()));
    let (code, out, _) = invpnd(&["-h"]);
    assert_eq!(code, 0);
    for opt in ["-c, --config FILE", "-t, --check", "-v, --verbose", "--tunfd FD"] {
        assert!(out.contains(opt), "{opt} missing from help:\n{out}");
    }
    let (code, _, err) = invpnd(&["--frobnicate"]);
    assert_eq!(code, 1);
    assert!(err.contains("Unrecognized option"), "{err}");
    let (code, _, err) = invpnd(&["--tunfd", "x", "-t"]);
    assert_eq!(code, 1);
    assert!(err.contains("--tunfd"), "{err}");
}
