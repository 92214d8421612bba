//! Certificates for tests of TLS servers, made with `openssl`.

use std::path::Path;

/// Run `openssl` in `dir`; panics with its output if it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

/// A self-signed certificate for `cn`, as `<name>.key` and `<name>.crt` in `dir`.
pub fn self_signed(dir: &Path, name: &str, cn: &str) {
    let (key, crt, subject) = (
        format!("{name}.key"),
        format!("{name}.crt"),
        format!("/CN={cn}"),
    );
    openssl(
        dir,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", &subject,
            "-keyout", &key, "-out", &crt,
        ],
    );
}

/// A CA (`ca.key`, `ca.crt`) and a certificate it signs for the address `ip`
/// (`<name>.key`, `<name>.crt`), in `dir`.
pub fn signed_for_ip(dir: &Path, name: &str, ip: &str) {
    self_signed(dir, "ca", "lifeboat test CA");
    let (key, csr, crt) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={ip}"),
            "-keyout",
            &key,
            "-out",
            &csr,
        ],
    );
    std::fs::write(dir.join("san.ext"), format!("subjectAltName=IP:{ip}\n")).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            &crt,
        ],
    );
}
