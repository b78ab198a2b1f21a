//! Lockbox's certificates and KRLs as OpenSSH reads them: `ssh-keygen -L`
//! reads (and checks the CA's signature of) the certificates
//! `sign_user_certificate` made, and `ssh-keygen -Q` checks certificates
//! against KRLs `Krl::encode` wrote. Without `ssh-keygen` the tests say so
//! and pass, except in CI (`CI` set), where `.ci/run` installs it and a
//! missing one fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use ed25519_dalek::SigningKey;
use lockbox_core::ssh::cert::{CertificateSpec, ed25519_public_key, sign_user_certificate};
use lockbox_core::ssh::krl::{Krl, RevokedCertificates};

/// A directory of its own, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "lockbox-krl-{}-{}",
            std::process::id(),
            hex::encode(lockbox_core::id::random_bytes::<8>().unwrap())
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn keygen(args: &[&str]) -> std::process::Output {
    Command::new("ssh-keygen")
        .args(args)
        .output()
        .expect("run ssh-keygen")
}

/// A new Ed25519 key pair at `path` (and `path.pub`).
fn key(path: &Path) {
    let out = keygen(&[
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-C",
        "",
        "-f",
        path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
}

/// The wire form of the public key in `path.pub`.
fn public_blob(path: &Path) -> Vec<u8> {
    let text = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    let b64 = text.split_whitespace().nth(1).unwrap();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

/// `ssh-keygen -Q`'s verdict on `cert` under `krl`: revoked or not.
fn revoked(scratch: &Scratch, krl: &Krl, cert: &Path) -> bool {
    let file = scratch.path("krl");
    std::fs::write(&file, krl.encode().unwrap()).unwrap();
    let out = keygen(&["-Q", "-f", file.to_str().unwrap(), cert.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    match out.status.code() {
        Some(0) if said.contains(": ok") => false,
        Some(1) if said.contains("REVOKED") => true,
        _ => panic!("ssh-keygen -Q did not read the KRL: {out:?}"),
    }
}

/// Whether `ssh-keygen` can be run; in CI it must.
fn have_keygen() -> bool {
    if Command::new("ssh-keygen").arg("-?").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI needs ssh-keygen (openssh-client): .ci/run installs it"
    );
    eprintln!("ssh-keygen is not installed: nothing is checked against OpenSSH");
    false
}

#[test]
fn openssh_reads_lockbox_certificates() {
    if !have_keygen() {
        return;
    }
    let s = Scratch::new();
    let user = s.path("user");
    key(&user);
    let ca = SigningKey::from_bytes(&lockbox_core::id::random_bytes::<32>().unwrap());
    let spec = CertificateSpec {
        serial: 42,
        key_id: "grant:01J0000000000000000000000:sam".into(),
        principals: vec![
            "/subscriptions/sub-1/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/vm-1"
                .into(),
            "support".into(),
        ],
        valid_after: 1_700_000_000,
        valid_before: 4_000_000_000,
        critical_options: vec![("force-command".into(), "/usr/bin/uptime".into())],
        extensions: vec!["permit-pty".into(), "permit-agent-forwarding".into()],
        nonce: lockbox_core::id::random_bytes::<32>().unwrap(),
    };
    let cert = sign_user_certificate(&ca, &public_blob(&user), &spec).unwrap();
    let write = |name: &str, blob: &[u8]| {
        let path = s.path(name);
        let line = format!(
            "ssh-ed25519-cert-v01@openssh.com {} sam\n",
            base64::engine::general_purpose::STANDARD.encode(blob)
        );
        std::fs::write(&path, line).unwrap();
        path
    };
    let path = write("user-cert.pub", &cert);
    let out = keygen(&["-L", "-f", path.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{out:?}");
    for expected in [
        "Type: ssh-ed25519-cert-v01@openssh.com user certificate",
        "Key ID: \"grant:01J0000000000000000000000:sam\"",
        "Serial: 42",
        "virtualMachines/vm-1",
        "support",
        "force-command /usr/bin/uptime",
        "permit-agent-forwarding",
        "permit-pty",
    ] {
        assert!(said.contains(expected), "`{expected}` in:\n{said}");
    }
    // A certificate whose signed part was changed does not parse.
    let mut forged = cert.clone();
    let at = forged.len() / 2;
    forged[at] ^= 1;
    let path = write("forged-cert.pub", &forged);
    let out = keygen(&["-L", "-f", path.to_str().unwrap()]);
    assert!(!out.status.success(), "a forged certificate: {out:?}");
    // And a KRL revokes it by serial, under this CA's key.
    let cert_path = s.path("user-cert.pub");
    let krl = Krl {
        certificates: vec![RevokedCertificates {
            ca_key: ed25519_public_key(&ca.verifying_key()),
            serials: vec![42],
            key_ids: vec![],
        }],
        ..Krl::default()
    };
    assert!(revoked(&s, &krl, &cert_path));
    let other = Krl {
        certificates: vec![RevokedCertificates {
            serials: vec![41, 43],
            ..krl.certificates[0].clone()
        }],
        ..Krl::default()
    };
    assert!(!revoked(&s, &other, &cert_path));
}

#[test]
fn openssh_reads_lockbox_krls() {
    if !have_keygen() {
        return;
    }
    let s = Scratch::new();
    let (ca, other_ca, user) = (s.path("ca"), s.path("other-ca"), s.path("user"));
    for k in [&ca, &other_ca, &user] {
        key(k);
    }
    // A certificate as Lockbox will issue them: serial 7, key id naming
    // the grant.
    let out = keygen(&[
        "-q",
        "-s",
        ca.to_str().unwrap(),
        "-I",
        "grant:01J0000000000000000000000:sam",
        "-n",
        "vm-1",
        "-z",
        "7",
        user.with_extension("pub").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let cert = s.path("user-cert.pub");
    let krl = |ca_key: Vec<u8>, serials: Vec<u64>, key_ids: Vec<&str>| Krl {
        version: 3,
        generated_at: 1_765_000_000,
        comment: "lockbox test".into(),
        certificates: vec![RevokedCertificates {
            ca_key,
            serials,
            key_ids: key_ids.into_iter().map(str::to_owned).collect(),
        }],
    };
    let ca_key = public_blob(&ca);
    assert!(
        !revoked(&s, &Krl::default(), &cert),
        "an empty KRL revokes nothing"
    );
    assert!(
        revoked(&s, &krl(ca_key.clone(), vec![7], vec![]), &cert),
        "by serial"
    );
    assert!(
        revoked(&s, &krl(ca_key.clone(), vec![5, 6, 7, 8], vec![]), &cert),
        "by a range of serials"
    );
    assert!(
        !revoked(
            &s,
            &krl(ca_key.clone(), vec![1, 2, 3, 9, 11], vec![]),
            &cert
        ),
        "other serials"
    );
    assert!(
        !revoked(&s, &krl(public_blob(&other_ca), vec![7], vec![]), &cert),
        "another CA's serial 7"
    );
    assert!(
        revoked(
            &s,
            &krl(
                ca_key.clone(),
                vec![],
                vec!["grant:01J0000000000000000000000:sam"]
            ),
            &cert
        ),
        "by key id"
    );
    assert!(
        !revoked(&s, &krl(ca_key, vec![], vec!["grant:other:sam"]), &cert),
        "another key id"
    );
}

#[test]
fn key_lines_and_fingerprints_are_as_openssh_writes_them() {
    if !have_keygen() {
        return;
    }
    let scratch = Scratch::new();
    for (kind, bits) in [("ed25519", None), ("rsa", Some("2048"))] {
        let path = scratch.path(kind);
        let mut args = vec![
            "-q",
            "-t",
            kind,
            "-N",
            "",
            "-C",
            "me@laptop",
            "-f",
            path.to_str().unwrap(),
        ];
        if let Some(bits) = bits {
            args.extend(["-b", bits]);
        }
        assert!(keygen(&args).status.success());
        let line = std::fs::read_to_string(path.with_extension("pub")).unwrap();
        let blob = lockbox_core::ssh::from_line(line.trim()).unwrap();
        assert_eq!(blob, public_blob(&path));
        assert!(
            lockbox_core::ssh::cert::subject_key(&blob).is_ok(),
            "{kind}"
        );
        assert_eq!(
            lockbox_core::ssh::to_line(&blob, "me@laptop"),
            line.trim(),
            "{kind}: the line as ssh-keygen wrote it"
        );
        let listed = keygen(&["-l", "-f", path.with_extension("pub").to_str().unwrap()]);
        let listed = String::from_utf8_lossy(&listed.stdout).to_string();
        assert_eq!(
            listed.split_whitespace().nth(1),
            Some(lockbox_core::ssh::fingerprint(&blob).as_str()),
            "{kind}: {listed}"
        );
    }
    // A line whose type is not its key's, and lines that are not keys.
    let ed = std::fs::read_to_string(scratch.path("ed25519").with_extension("pub")).unwrap();
    let lying = ed.replacen("ssh-ed25519", "ssh-rsa", 1);
    assert!(lockbox_core::ssh::from_line(lying.trim()).is_err());
    for bad in ["", "ssh-ed25519", "ssh-ed25519 ***", &"A".repeat(9000)] {
        assert!(lockbox_core::ssh::from_line(bad).is_err(), "{bad:.20}");
    }
    // A 1024-bit RSA key is refused.
    let small = scratch.path("small");
    assert!(
        keygen(&[
            "-q",
            "-t",
            "rsa",
            "-b",
            "1024",
            "-N",
            "",
            "-f",
            small.to_str().unwrap()
        ])
        .status
        .success()
    );
    let line = std::fs::read_to_string(small.with_extension("pub")).unwrap();
    let blob = lockbox_core::ssh::from_line(line.trim()).unwrap();
    assert!(lockbox_core::ssh::cert::subject_key(&blob).is_err());
}
