//! `lockbox doctor`: checks a configuration and what it points at (the
//! database and its schema, the key-encryption key and the keys it seals,
//! the clocks, secret files' modes, SMTP, the public URL) and says what is
//! wrong, one line per check. It changes nothing: it never creates a
//! database or a file, and never migrates.

use std::path::Path;
use std::time::Duration;

use lockbox_core::{Clock, SystemClock};
use lockbox_server::config::{Config, redact_url};
use lockbox_server::kek::Kek;
use lockbox_server::signing_keys;
use lockbox_store::{SCHEMA_VERSION, Store, StoreOptions};
use serde::Serialize;

use crate::CliError;
use crate::output::Output;

/// How far the database's clock may be from this machine's before it is
/// worth a warning, and before it is an error.
const CLOCK_WARN: Duration = Duration::from_secs(2);
const CLOCK_FAIL: Duration = Duration::from_secs(30);

/// How long to wait for the database or the SMTP server.
const REACH: Duration = Duration::from_secs(5);

/// What one check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Verdict {
    /// As it should be.
    Ok,
    /// Works, but worth a look.
    Warn,
    /// The server would not start, or would misbehave.
    Fail,
}

/// One check and what it found.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Finding {
    check: &'static str,
    verdict: Verdict,
    detail: String,
}

#[derive(Default)]
struct Report(Vec<Finding>);

impl Report {
    fn add(&mut self, check: &'static str, verdict: Verdict, detail: impl Into<String>) {
        self.0.push(Finding {
            check,
            verdict,
            detail: detail.into(),
        });
    }
}

/// Runs every check on `config` and prints what each found; an error (exit
/// 1) when any failed.
pub(crate) async fn run(config: &Config, out: Output) -> Result<(), CliError> {
    let mut report = Report::default();
    let store = database(config, &mut report).await;
    if let Some(store) = &store {
        clock(store, &mut report).await;
    }
    kek(config, store.as_ref(), &mut report).await;
    secret_files(config, &mut report);
    smtp(config, &mut report).await;
    public_url(config, &mut report);
    let findings = report.0;
    match out {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&findings).map_err(|e| CliError::Io(e.to_string()))?
        ),
        Output::Table => {
            for f in &findings {
                let verdict = match f.verdict {
                    Verdict::Ok => "ok",
                    Verdict::Warn => "warn",
                    Verdict::Fail => "FAIL",
                };
                println!("{verdict:<5} {:<13} {}", f.check, f.detail);
            }
        }
    }
    let failed = findings
        .iter()
        .filter(|f| f.verdict == Verdict::Fail)
        .count();
    if failed > 0 {
        eprintln!(
            "{failed} check{} failed",
            if failed == 1 { "" } else { "s" }
        );
        // The report said what is wrong.
        return Err(CliError::Exit(1));
    }
    Ok(())
}

/// The database: reachable, and its schema this binary's (or older, to be
/// migrated on start). Never creates or migrates it.
async fn database(config: &Config, report: &mut Report) -> Option<Store> {
    let url = &config.database.url;
    let shown = redact_url(url);
    if let Some(file) = url.strip_prefix("sqlite://") {
        let path = file.split('?').next().unwrap_or(file);
        if !Path::new(path).exists() {
            report.add(
                "database",
                Verdict::Fail,
                format!(
                    "{shown}: the file does not exist; `lockbox init` makes a new installation"
                ),
            );
            return None;
        }
    }
    let options = StoreOptions {
        max_connections: 1,
        acquire_timeout: REACH,
        ..StoreOptions::default()
    };
    let store = match tokio::time::timeout(REACH, Store::connect(url, options)).await {
        Ok(Ok(store)) => store,
        Ok(Err(e)) => {
            report.add("database", Verdict::Fail, format!("{shown}: {e}"));
            return None;
        }
        Err(_) => {
            report.add(
                "database",
                Verdict::Fail,
                format!("{shown}: no answer within {} s", REACH.as_secs()),
            );
            return None;
        }
    };
    match store.schema_version().await {
        Err(e) => report.add("database", Verdict::Fail, format!("{shown}: {e}")),
        Ok(None) => report.add(
            "database",
            Verdict::Fail,
            format!("{shown}: reachable but empty; `lockbox init` makes a new installation"),
        ),
        Ok(Some(v)) if v == SCHEMA_VERSION => report.add(
            "database",
            Verdict::Ok,
            format!("{shown}: reachable, schema {v} (this version's)"),
        ),
        Ok(Some(v)) if v < SCHEMA_VERSION => report.add(
            "database",
            Verdict::Warn,
            format!(
                "{shown}: schema {v}, older than this version's {SCHEMA_VERSION}: `lockbox serve` \
                 migrates it on start; back it up first"
            ),
        ),
        Ok(Some(v)) => report.add(
            "database",
            Verdict::Fail,
            format!(
                "{shown}: schema {v} is newer than this version knows ({SCHEMA_VERSION}): a newer \
                 Lockbox migrated it; run that version or later"
            ),
        ),
    }
    Some(store)
}

/// The database's clock against this machine's.
async fn clock(store: &Store, report: &mut Report) {
    let theirs = match store.database_time().await {
        Ok(t) => t,
        Err(e) => {
            report.add(
                "clock",
                Verdict::Fail,
                format!("cannot read the database's clock: {e}"),
            );
            return;
        }
    };
    let ours = SystemClock.now();
    let apart = (theirs - ours).abs().to_std().unwrap_or(Duration::MAX);
    let said = format!(
        "the database's clock is {} ms {} this machine's",
        apart.as_millis(),
        if theirs >= ours { "ahead of" } else { "behind" }
    );
    let verdict = if apart > CLOCK_FAIL {
        Verdict::Fail
    } else if apart > CLOCK_WARN {
        Verdict::Warn
    } else {
        Verdict::Ok
    };
    let advice = match verdict {
        Verdict::Ok => "",
        // Grants start and end, requests expire and events are stamped by
        // these clocks.
        Verdict::Warn | Verdict::Fail => "; synchronise both with NTP",
    };
    report.add("clock", verdict, format!("{said}{advice}"));
}

/// The key-encryption key: configured, readable by its owner only, and
/// the one the database's signing keys are sealed with.
async fn kek(config: &Config, store: Option<&Store>, report: &mut Report) {
    let sealed_with = match store {
        Some(store) => signing_keys::sealed_with(store).await.unwrap_or_default(),
        None => Vec::new(),
    };
    let Some(path) = &config.keys.kek_file else {
        report.add(
            "kek",
            Verdict::Fail,
            match sealed_with.first() {
                Some(id) => format!(
                    "no kek_file is configured, and the database's signing keys are sealed with KEK {id}: set [keys] kek_file to its file"
                ),
                None => "no kek_file is configured ([keys] kek_file, LOCKBOX_KEYS__KEK_FILE or --kek-file): the server does not start without one".to_owned(),
            },
        );
        return;
    };
    let shown = path.display();
    if let Some(problem) = loose_mode(path) {
        report.add("kek", Verdict::Fail, format!("{shown}: {problem}"));
        return;
    }
    let kek = match Kek::load(path) {
        Ok(kek) => kek,
        Err(e) => {
            report.add("kek", Verdict::Fail, e.to_string());
            return;
        }
    };
    match sealed_with.iter().find(|id| id.as_str() != kek.id()) {
        Some(other) => report.add(
            "kek",
            Verdict::Fail,
            format!(
                "{shown} holds KEK {}, but the database has signing keys sealed with KEK {other}: the server cannot open them",
                kek.id()
            ),
        ),
        None => report.add(
            "kek",
            Verdict::Ok,
            format!("{shown}: KEK {}, readable by its owner only", kek.id()),
        ),
    }
}

/// Why a secret file's mode is too loose, if it is (readable or writable
/// by its group or others).
fn loose_mode(path: &Path) -> Option<String> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) => return Some(format!("cannot be read: {e}")),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Some(format!(
                "mode {mode:04o} lets others than its owner read or write it; `chmod 600` it"
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    None
}

/// Other files holding secrets: TLS key, metrics token, OIDC secret.
fn secret_files(config: &Config, report: &mut Report) {
    let files = [
        ("tls key", config.tls.key_file.as_ref()),
        ("metrics token", config.metrics.bearer_token_file.as_ref()),
        ("oidc secret", config.oidc.client_secret_file.as_ref()),
    ];
    for (what, path) in files {
        let Some(path) = path else { continue };
        match loose_mode(path) {
            Some(problem) => report.add(
                "secret files",
                Verdict::Fail,
                format!("{what} {}: {problem}", path.display()),
            ),
            None => report.add(
                "secret files",
                Verdict::Ok,
                format!("{what} {}: readable by its owner only", path.display()),
            ),
        }
    }
    if let Some(cert) = &config.tls.cert_file
        && let Err(e) = std::fs::metadata(cert)
    {
        report.add(
            "secret files",
            Verdict::Fail,
            format!("tls certificate {}: cannot be read: {e}", cert.display()),
        );
    }
}

/// The SMTP server, if e-mail is configured: a TCP connection to it.
async fn smtp(config: &Config, report: &mut Report) {
    let Some(host) = &config.smtp.host else {
        report.add("smtp", Verdict::Ok, "not configured: no e-mail is sent");
        return;
    };
    let port = config.smtp.port.unwrap_or(587);
    let target = format!("{host}:{port}");
    match tokio::time::timeout(REACH, tokio::net::TcpStream::connect(&target)).await {
        Ok(Ok(_)) => report.add("smtp", Verdict::Ok, format!("{target} accepts connections")),
        Ok(Err(e)) => report.add("smtp", Verdict::Fail, format!("{target}: {e}")),
        Err(_) => report.add(
            "smtp",
            Verdict::Fail,
            format!("{target}: no answer within {} s", REACH.as_secs()),
        ),
    }
}

/// The URL links in notifications and the portal's redirects use.
fn public_url(config: &Config, report: &mut Report) {
    let Some(url) = &config.server.public_url else {
        let loopback = config.server.listen.ip().is_loopback();
        report.add(
            "public url",
            if loopback { Verdict::Ok } else { Verdict::Warn },
            format!(
                "not set: links use http://{}{}",
                config.server.listen,
                if loopback {
                    ""
                } else {
                    "; set [server] public_url to the address people reach"
                }
            ),
        );
        return;
    };
    match url.parse::<axum::http::Uri>() {
        Err(e) => report.add("public url", Verdict::Fail, format!("{url}: {e}")),
        Ok(u) if !matches!(u.scheme_str(), Some("http" | "https")) || u.host().is_none() => {
            report.add(
                "public url",
                Verdict::Fail,
                format!("{url}: must be an http or https URL with a host"),
            );
        }
        Ok(u) if u.scheme_str() == Some("http") && !is_loopback_host(u.host().unwrap_or("")) => {
            report.add(
                "public url",
                Verdict::Warn,
                format!(
                    "{url}: plain http to another machine; sessions and tokens travel in the clear"
                ),
            );
        }
        Ok(_) => report.add("public url", Verdict::Ok, url.clone()),
    }
}

fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
