//! SSH certificates (issue 18): how fast Lockbox mints them, and how long
//! `sshd` waits for `lockbox ssh authorize` at each login.
//!
//! 1. **Signing**: `sign_user_certificate` for an Ed25519 subject key with
//!    a realistic spec (a key id of 80 characters, one principal of about
//!    100, `force-command`, `permit-pty`), beside raw Ed25519 signing of a
//!    message exactly as long as the certificate's signed part, by the
//!    same CA key: rounds of each, interleaved, certificates (signatures)
//!    a second and their ratio.
//! 2. **Minting over HTTP**: `POST /v1/grants/{id}/ssh-certificate`
//!    (`issue_certificate`: one transaction that takes a serial, records
//!    the certificate and seals its audit event) against a testkit SQLite
//!    server in this process, one call at a time, through the same client
//!    the CLI uses: certificates a second, beside the raw signing rate of
//!    step 1.
//! 3. **`lockbox ssh authorize`**, as `sshd` runs it as its
//!    `AuthorizedPrincipalsCommand` at each login: a new process of the
//!    release binary, which reads the gateway token file (mode 0600),
//!    makes one HTTP POST to `/v1/ssh/authorize` on loopback and prints the
//!    principals. Wall time from spawn to exit, every run checked to be
//!    allowed (its output is the certificate's principal). Interleaved
//!    with it, in the same run: `lockbox --version` (the cost of starting
//!    the process at all) and the same POST from this process over a
//!    kept-alive connection (the server's share). The goal: p99
//!    ≤ 20 ms on loopback.
//!
//! Step 3 runs `target/release/lockbox` (or `LOCKBOX_BIN`): build it first
//! with `cargo build --release -p lockbox`.
//!
//! Run: `cargo bench -p lockbox-bench --bench ssh [-- RUNS]` (default 300
//! runs of step 3 and 1 000 certificates in step 2, each step also
//! bounded in time).

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::print_stdout
)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _};
use lockbox_api as api;
use lockbox_bench::{machine, millis};
use lockbox_core::ssh::cert::{CertificateSpec, ed25519_public_key, sign_user_certificate};
use lockbox_core::ssh::{fingerprint, from_line, to_line};
use lockbox_testkit::{Contoso, TestServer};

/// The access level whose grants log in over SSH.
const LEVEL: &str = "VmSupportLogin";
/// Its Unix login.
const LOGIN: &str = "support";
/// Its `force-command`.
const FORCE_COMMAND: &str = "/usr/local/bin/lockbox-support-shell --read-only";
/// Signatures per timed round in step 1, and rounds of each kind.
const BATCH: u32 = 2_000;
const ROUNDS: usize = 15;
/// Step 2: certificates minted (after 20 unmeasured), at most this long.
const MINTS: usize = 1_000;
const MINT_TIME: Duration = Duration::from_secs(30);
/// Step 3: unmeasured runs first; the measured runs stop after this long.
const WARM_UP: usize = 10;
const AUTHORIZE_TIME: Duration = Duration::from_secs(120);

/// The bytes after a certificate's signed part: the signature as a
/// string holding `string("ssh-ed25519") string(64 bytes)`.
const SIGNATURE_FIELD: usize = 4 + (4 + 11) + (4 + 64);

fn ca_key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

/// An operator's Ed25519 public key in SSH wire form.
fn subject() -> Vec<u8> {
    ed25519_public_key(&SigningKey::from_bytes(&[7; 32]).verifying_key())
}

/// What `issue_certificate` puts in a certificate, at the sizes it has:
/// the key id names grant, operator and tenant; the principal is a VM's
/// resource id, lowercase.
fn spec(i: u64) -> CertificateSpec {
    let mut nonce = [0u8; 32];
    nonce[..8].copy_from_slice(&i.to_le_bytes());
    CertificateSpec {
        serial: i + 1,
        key_id: format!("lockbox grant=grant_{i:032x} operator=sam tenant=contoso"),
        principals: vec![
            "/subscriptions/sub-0001/resourcegroups/rg-web-prod/providers/microsoft.compute/virtualmachines/vm-web-01"
                .to_owned(),
        ],
        valid_after: 1_796_893_140,
        valid_before: 1_796_896_800,
        critical_options: vec![("force-command".to_owned(), FORCE_COMMAND.to_owned())],
        extensions: vec!["permit-pty".to_owned()],
        nonce,
    }
}

/// `p` (0 to 1) of sorted `samples`, as `lockbox_bench::summarize` picks
/// it.
fn at(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    at(&v, 0.5)
}

/// Step 1: (certificates a second, raw signatures a second), the median
/// of the rounds of each.
fn signing() -> (f64, f64) {
    let ca = ca_key();
    let subject = subject();
    let sample = sign_user_certificate(&ca, &subject, &spec(0)).unwrap();
    let signed_len = sample.len() - SIGNATURE_FIELD;
    // The signed part is exactly what the signature covers.
    let signature = Signature::from_bytes(sample[sample.len() - 64..].try_into().unwrap());
    ca.verifying_key()
        .verify(&sample[..signed_len], &signature)
        .expect("the certificate's signed part is its first signed_len bytes");
    let s = spec(0);
    println!(
        "signing: certificate {} bytes, signed part {signed_len} bytes; key id {} chars, \
         principal {} chars, force-command {} chars, permit-pty",
        sample.len(),
        s.key_id.len(),
        s.principals[0].len(),
        FORCE_COMMAND.len()
    );
    let mut message = vec![0x5a_u8; signed_len];
    let (mut certs, mut raws) = (Vec::new(), Vec::new());
    let mut n = 0u64;
    for round in 0..=ROUNDS {
        let started = Instant::now();
        for _ in 0..BATCH {
            n += 1;
            let cert = sign_user_certificate(&ca, &subject, &spec(n)).unwrap();
            std::hint::black_box(cert);
        }
        let cert_rate = f64::from(BATCH) / started.elapsed().as_secs_f64();
        let started = Instant::now();
        for _ in 0..BATCH {
            n += 1;
            message[..8].copy_from_slice(&n.to_le_bytes());
            std::hint::black_box(ca.sign(std::hint::black_box(&message)));
        }
        let raw_rate = f64::from(BATCH) / started.elapsed().as_secs_f64();
        // Round 0 warms up.
        if round > 0 {
            certs.push(cert_rate);
            raws.push(raw_rate);
        }
    }
    let spread = |v: &[f64]| {
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, 0.0_f64), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
        format!("{lo:.0}–{hi:.0}")
    };
    println!(
        "signing: {ROUNDS} rounds of {BATCH} each, interleaved; rounds ranged \
         certificates {}/s, raw {}/s",
        spread(&certs),
        spread(&raws)
    );
    (median(certs), median(raws))
}

/// Defines [`LEVEL`] and has sam's request for it on the VM approved:
/// the grant's id.
async fn ssh_grant(world: &Contoso) -> String {
    world
        .define_ssh_level(LEVEL, LOGIN, Some(FORCE_COMMAND))
        .await;
    let approved = world.approved(Contoso::VM, LEVEL, Some(8)).await;
    approved.grant.expect("the approval's grant").id
}

/// Step 2: (certificates a second, p50 ms, p99 ms, count).
async fn minting(world: &Contoso, grant: &str) -> (f64, f64, f64, usize) {
    let key = to_line(&subject(), "sam@laptop");
    let principal = Contoso::VM.to_ascii_lowercase();
    let mint = || async {
        let made = world.sam.client.ssh_certificate(grant, &key).await.unwrap();
        assert_eq!(made.principals, [principal.as_str()]);
        assert_eq!(made.login, LOGIN);
        made
    };
    for _ in 0..20 {
        mint().await;
    }
    let mut latencies = Vec::with_capacity(MINTS);
    let started = Instant::now();
    let mut last = 0;
    while latencies.len() < MINTS && started.elapsed() < MINT_TIME {
        let t = Instant::now();
        let made = mint().await;
        latencies.push(millis(t.elapsed()));
        assert!(made.serial > last, "serials increase");
        last = made.serial;
    }
    let rate = latencies.len() as f64 / started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    (
        rate,
        at(&latencies, 0.5),
        at(&latencies, 0.99),
        latencies.len(),
    )
}

/// The release binary step 3 runs.
fn binary() -> PathBuf {
    let path = std::env::var_os("LOCKBOX_BIN").map_or_else(
        || {
            std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(
                    || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
                    PathBuf::from,
                )
                .join("release/lockbox")
        },
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "{} is missing: build it first with `cargo build --release -p lockbox` \
         (or set LOCKBOX_BIN to a lockbox binary)",
        path.display()
    );
    path
}

/// A scratch directory for the token file, removed at the end.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One timed run of `cmd`: milliseconds from spawn to exit, and what it
/// printed. A failed run stops the bench.
fn timed(cmd: &mut Command) -> (f64, String) {
    let started = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run lockbox");
    let took = millis(started.elapsed());
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    (took, String::from_utf8(out.stdout).unwrap())
}

struct Latencies {
    version: Vec<f64>,
    call: Vec<f64>,
    authorize: Vec<f64>,
}

/// Step 3: `runs` interleaved triples (process start, the POST alone,
/// the whole `lockbox ssh authorize`), bounded by [`AUTHORIZE_TIME`].
async fn authorizing(
    server: &TestServer,
    world: &Contoso,
    grant: &str,
    bin: &Path,
    runs: usize,
) -> Latencies {
    let made = world
        .sam
        .client
        .ssh_certificate(grant, &to_line(&subject(), "sam@laptop"))
        .await
        .unwrap();
    // `%k`: the certificate's base64, as sshd passes it.
    let k = made
        .certificate
        .split_whitespace()
        .nth(1)
        .expect("a certificate line")
        .to_owned();
    let cert_fingerprint = fingerprint(&from_line(&made.certificate).unwrap());
    let scratch = Scratch(std::env::temp_dir().join(format!(
        "lockbox-ssh-bench-{}-{}",
        std::process::id(),
        lockbox_core::id::random_bytes::<4>()
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )));
    std::fs::create_dir_all(&scratch.0).unwrap();
    let token_file = scratch.0.join("gate.token");
    std::fs::write(&token_file, format!("{}\n", world.gate.token)).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();

    let principal = Contoso::VM.to_ascii_lowercase();
    let expected = format!("{principal}\n");
    let authorize = || {
        let mut cmd = Command::new(bin);
        cmd.args(["ssh", "authorize", "--server", &server.url, "--token-file"])
            .arg(&token_file)
            .args(["--resource", Contoso::VM, LOGIN, &k])
            .env_remove("RUST_LOG")
            .env_remove("LOCKBOX_TOKEN");
        let (took, said) = timed(&mut cmd);
        assert_eq!(said, expected, "the login is allowed, as its principal");
        took
    };
    let version = || timed(Command::new(bin).arg("--version")).0;
    let gate = server.client(&world.gate.token);
    let login = api::SshLogin {
        certificate: k.clone(),
        resource: Contoso::VM.to_owned(),
        login: LOGIN.to_owned(),
        admin: false,
    };
    let call = || async {
        let started = Instant::now();
        let answer = gate.ssh_authorize(&login).await.unwrap();
        let took = millis(started.elapsed());
        assert!(answer.allowed, "{answer:?}");
        assert_eq!(answer.principals, [principal.as_str()]);
        took
    };
    println!(
        "authorize: {} ssh authorize --server {} --token-file {} --resource {} {LOGIN} <certificate {}>",
        bin.display(),
        server.url,
        token_file.display(),
        Contoso::VM,
        cert_fingerprint
    );
    for _ in 0..WARM_UP {
        version();
        call().await;
        authorize();
    }
    let mut out = Latencies {
        version: Vec::with_capacity(runs),
        call: Vec::with_capacity(runs),
        authorize: Vec::with_capacity(runs),
    };
    let started = Instant::now();
    while out.authorize.len() < runs && started.elapsed() < AUTHORIZE_TIME {
        // The order turns each time, so that none always follows another.
        match out.authorize.len() % 3 {
            0 => {
                out.version.push(version());
                out.call.push(call().await);
                out.authorize.push(authorize());
            }
            1 => {
                out.authorize.push(authorize());
                out.version.push(version());
                out.call.push(call().await);
            }
            _ => {
                out.call.push(call().await);
                out.authorize.push(authorize());
                out.version.push(version());
            }
        }
    }
    if out.authorize.len() < runs {
        println!(
            "authorize: stopped after {:.0} s with {} runs of {runs}",
            started.elapsed().as_secs_f64(),
            out.authorize.len()
        );
    }
    out
}

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(300);
    let bin = binary();
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|m| m.elapsed().ok())
        .map_or_else(String::new, |age| {
            format!(", built {:.0} min ago", age.as_secs_f64() / 60.0)
        });
    println!("ssh: {}; binary {}{built}", machine(), bin.display());

    let (cert_rate, raw_rate) = signing();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mint, lat) = runtime.block_on(async {
        let mut server = TestServer::sqlite().await;
        let world = Contoso::seed(&server).await;
        let grant = ssh_grant(&world).await;
        let mint = minting(&world, &grant).await;
        let lat = authorizing(&server, &world, &grant, &bin, runs).await;
        server.stop();
        tokio::time::sleep(Duration::from_millis(200)).await;
        (mint, lat)
    });

    println!("\n| what | per second | of raw Ed25519 signing |");
    println!("| --- | ---: | ---: |");
    println!("| raw Ed25519 signature, same length | {raw_rate:.0} | |");
    println!(
        "| `sign_user_certificate` | {cert_rate:.0} | {:.1}% |",
        100.0 * cert_rate / raw_rate
    );
    let (mint_rate, mint_p50, mint_p99, minted) = mint;
    println!(
        "| `POST /v1/grants/{{id}}/ssh-certificate`, SQLite, sequential ({minted}) | {mint_rate:.0} | {:.1}% |",
        100.0 * mint_rate / raw_rate
    );
    println!("\nminting over HTTP: p50 {mint_p50:.2} ms, p99 {mint_p99:.2} ms a certificate");

    let n = lat.authorize.len();
    println!("\n{n} runs each, interleaved, ms:\n");
    println!("| what | p50 | p90 | p99 | max | mean |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let mut p99 = f64::NAN;
    for (what, mut v) in [
        ("`lockbox --version` (process start)", lat.version),
        (
            "`POST /v1/ssh/authorize` from this process (kept alive)",
            lat.call,
        ),
        ("`lockbox ssh authorize`, whole run", lat.authorize),
    ] {
        v.sort_by(f64::total_cmp);
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        println!(
            "| {what} | {:.2} | {:.2} | {:.2} | {:.2} | {mean:.2} |",
            at(&v, 0.5),
            at(&v, 0.9),
            at(&v, 0.99),
            v[v.len() - 1]
        );
        p99 = at(&v, 0.99);
    }
    println!(
        "\nlockbox ssh authorize: p99 {p99:.2} ms against the goal of 20 ms: {}",
        if p99 <= 20.0 { "met" } else { "NOT met" }
    );
}
