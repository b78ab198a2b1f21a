//! `lockbox audit export | verify | tail`.
//!
//! `verify` works offline: it reads the export file and the public key and
//! nothing else (no server, no database), in constant memory, and names the
//! first bad event. With `--idp-jwks` (the tenant's identity provider's
//! keys, the one thing it may fetch) it also checks the evidence of every
//! decision, in a second pass that reads the events leniently: an event
//! edited and re-hashed by a forger still has its evidence checked.

use std::fs::File;
use std::io::{
    BufRead as _, BufReader, IsTerminal as _, Read as _, Seek as _, SeekFrom, Write as _,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use lockbox_client::{AuditQuery, Client};
use lockbox_core::audit::export::{self, ExportError, ExportVerifier};
use lockbox_core::{AuditEvent, Chain, Checkpoint, PublicKey, TenantId, VerifiedChain};
use lockbox_server::evidence::{EvidenceChecker, EvidenceReport};
use serde_json::{Value, json};

use crate::CliError;
use crate::output::Output;
use crate::remote::{Remote, tenant_of};

/// The audit commands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum AuditCommand {
    /// Download a tenant's audit log as an export file: every event, then a
    /// signed checkpoint covering the last one.
    #[command(after_help = "Examples:\n  \
        lockbox audit export -o contoso-audit.ndjson\n  \
        lockbox audit export --tenant contoso --server https://lockbox.example.com > audit.ndjson")]
    Export {
        #[command(flatten)]
        remote: Remote,
        /// The tenant (default: the signed-in user's own).
        #[arg(long)]
        tenant: Option<String>,
        /// Write to FILE (default: standard output). The file appears only
        /// once the whole export has arrived.
        #[arg(short, long, value_name = "FILE")]
        output_file: Option<PathBuf>,
    },
    /// Check an export file offline: every event's hash and link, the
    /// sequence, and the checkpoint's signature; with `--idp-jwks`, also
    /// the identity provider's evidence of every decision. Exits 0 if it
    /// verifies, 1 if it does not (naming the first bad event) or if any
    /// decision's evidence fails (decisions without evidence are listed,
    /// but do not fail it), 2 if it cannot be read.
    #[command(after_help = "Examples:\n  \
        curl -s https://lockbox.example.com/v1/audit/public-key > lockbox-key.json\n  \
        lockbox audit verify contoso-audit.ndjson --public-key lockbox-key.json\n  \
        lockbox audit verify audit.ndjson --public-key 3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c --output json\n  \
        lockbox audit verify contoso-audit.ndjson --public-key lockbox-key.json --idp-jwks https://login.contoso.com/jwks\n  \
        lockbox audit verify contoso-audit.ndjson --public-key lockbox-key.json --idp-jwks idp-keys-2026.json --idp-jwks idp-keys-2027.json\n\n\
        With --idp-jwks, each approval, denial and revocation made in the portal after signing in\n\
        again at the tenant's identity provider carries the ID token the IdP signed for it; its\n\
        signature, issuer, audience, subject (the approver's link) and nonce (the decision's\n\
        digest) are checked. Save the IdP's key set (its discovery document's jwks_uri) while\n\
        its keys are current: an IdP drops old keys after rotating them.")]
    Verify {
        /// The export file.
        file: PathBuf,
        /// A trusted checkpoint key: 64 hex digits, or a file holding them
        /// (or the JSON of `GET /v1/audit/public-key`). Repeat for several.
        #[arg(long = "public-key", value_name = "KEY")]
        public_keys: Vec<String>,
        /// A checkpoint kept from before that the log must still agree
        /// with: an earlier export (its last line is used), a checkpoint
        /// line, or the JSON `POST …/audit/checkpoints` answered. Catches a
        /// log cut back or rewritten below it and signed again. Repeatable.
        #[arg(long = "checkpoint", value_name = "FILE")]
        checkpoints: Vec<PathBuf>,
        /// The tenant the log must belong to (default: the one its
        /// checkpoint names).
        #[arg(long)]
        tenant: Option<String>,
        /// The tenant's identity provider's public keys, a JSON Web Key
        /// Set: a file, or an `https://` (or `http://`) URL fetched once.
        /// Checks the evidence each decision carries. Repeat for the key
        /// sets of other times.
        #[arg(long = "idp-jwks", value_name = "FILE_OR_URL")]
        idp_jwks: Vec<String>,
        /// `table` (sentences) or `json`.
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Print a tenant's latest events, then follow new ones as they are
    /// written (Ctrl-C stops).
    #[command(after_help = "Examples:\n  \
        lockbox audit tail\n  \
        lockbox audit tail --tenant contoso --kind access.denied --output json")]
    Tail {
        #[command(flatten)]
        remote: Remote,
        /// The tenant (default: the signed-in user's own).
        #[arg(long)]
        tenant: Option<String>,
        /// Only events of this kind.
        #[arg(long)]
        kind: Option<String>,
        /// How many past events to show first.
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: u64,
        /// Seconds between polls for new events.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        /// `table` (one line per event) or `json` (NDJSON, as exported).
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

pub(crate) async fn run(command: AuditCommand) -> Result<(), CliError> {
    match command {
        AuditCommand::Export {
            remote,
            tenant,
            output_file,
        } => {
            let client = remote.client()?;
            let tenant = tenant_of(&client, tenant).await?;
            export_to(&client, &tenant, output_file.as_deref()).await
        }
        AuditCommand::Verify {
            file,
            public_keys,
            checkpoints,
            tenant,
            idp_jwks,
            output,
        } => {
            let evidence = if idp_jwks.is_empty() {
                None
            } else {
                Some(evidence_checker(&idp_jwks).await?)
            };
            verify(
                &file,
                &public_keys,
                &checkpoints,
                tenant.as_deref(),
                evidence,
                output,
            )
        }
        AuditCommand::Tail {
            remote,
            tenant,
            kind,
            lines,
            interval,
            output,
        } => {
            let client = remote.client()?;
            let tenant = tenant_of(&client, tenant).await?;
            if !(0.05..=3600.0).contains(&interval) {
                return Err(CliError::Usage(
                    "--interval must be between 0.05 and 3600 seconds".into(),
                ));
            }
            tail(&client, &tenant, kind, lines, interval, output).await
        }
    }
}

pub(crate) fn bar(len: Option<u64>, unit: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = len.map_or_else(ProgressBar::new_spinner, ProgressBar::new);
    let template = if len.is_some() {
        format!(
            "{{spinner}} [{{bar:40}}] {{percent:>3}}% {{human_pos}}/{{human_len}} {unit} {{per_sec}} eta {{eta}}"
        )
    } else {
        format!("{{spinner}} {{human_pos}} {unit} {{per_sec}} {{elapsed}}")
    };
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

async fn export_to(client: &Client, tenant: &str, path: Option<&Path>) -> Result<(), CliError> {
    let progress = bar(None, "lines");
    let mut show = |lines: u64, expected: Option<u64>| {
        if let Some(n) = expected
            && progress.length().is_none()
        {
            progress.set_length(n);
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} [{bar:40}] {percent:>3}% {human_pos}/{human_len} lines {per_sec} eta {eta}",
            ) {
                progress.set_style(style.progress_chars("=> "));
            }
        }
        progress.set_position(lines);
    };
    match path {
        None => {
            let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
            client.export_audit(tenant, &mut out, &mut show).await?;
            progress.finish_and_clear();
            Ok(())
        }
        Some(path) => {
            // Into a partial file first, so that a cut-off download never
            // sits where the export is expected.
            let mut partial = path.as_os_str().to_owned();
            partial.push(".partial");
            let partial = PathBuf::from(partial);
            let file = File::create(&partial)
                .map_err(|e| CliError::Io(format!("cannot create {}: {e}", partial.display())))?;
            let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
            let written = client.export_audit(tenant, &mut out, &mut show).await;
            progress.finish_and_clear();
            let bytes = match written {
                Ok(bytes) => bytes,
                Err(e) => {
                    drop(out);
                    let _ = std::fs::remove_file(&partial);
                    return Err(e.into());
                }
            };
            drop(out);
            std::fs::rename(&partial, path).map_err(|e| {
                CliError::Io(format!("cannot move the export to {}: {e}", path.display()))
            })?;
            eprintln!(
                "Exported tenant {tenant}'s audit log to {} ({bytes} bytes). Verify it with: lockbox audit verify {} --public-key KEY",
                path.display(),
                path.display()
            );
            Ok(())
        }
    }
}

/// Reads trusted keys: hex, a file of hex, or the public-key endpoint's
/// JSON.
fn public_keys(args: &[String]) -> Result<Vec<PublicKey>, CliError> {
    let mut keys = Vec::new();
    for arg in args {
        if let Ok(key) = PublicKey::parse(arg) {
            keys.push(key);
            continue;
        }
        let text = std::fs::read_to_string(arg).map_err(|e| {
            CliError::Usage(format!(
                "--public-key {arg}: neither 64 hex digits nor a readable file ({e})"
            ))
        })?;
        if let Ok(key) = PublicKey::parse(&text) {
            keys.push(key);
            continue;
        }
        let published: lockbox_api::AuditPublicKey = serde_json::from_str(&text).map_err(|_| {
            CliError::Usage(format!(
                "--public-key {arg}: the file holds neither 64 hex digits nor the JSON of GET /v1/audit/public-key"
            ))
        })?;
        for k in &published.keys {
            keys.push(PublicKey::parse(&k.public_key).map_err(|e| {
                CliError::Usage(format!("--public-key {arg}: key {}: {e}", k.key_id))
            })?);
        }
    }
    Ok(keys)
}

/// The last non-blank line of a file, read from its end.
fn last_line(file: &mut File) -> std::io::Result<Vec<u8>> {
    const STEP: u64 = 64 * 1024;
    let len = file.seek(SeekFrom::End(0))?;
    let mut tail: Vec<u8> = Vec::new();
    let mut pos = len;
    while pos > 0 {
        let from = pos.saturating_sub(STEP);
        file.seek(SeekFrom::Start(from))?;
        let mut chunk = vec![0; usize::try_from(pos - from).unwrap_or(0)];
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&tail);
        tail = chunk;
        pos = from;
        let trimmed = tail.trim_ascii_end();
        if let Some(nl) = trimmed.iter().rposition(|&b| b == b'\n') {
            return Ok(trimmed.get(nl + 1..).unwrap_or_default().to_vec());
        }
        if tail.len() > 16 * 1024 * 1024 {
            break;
        }
    }
    Ok(tail.trim_ascii_end().to_vec())
}

/// The chain an export is to be checked against: the user's tenant, else
/// the one its checkpoint line names, else its first event's.
fn chain_to_verify(file: &mut File, tenant: Option<&str>) -> Result<Chain, CliError> {
    if let Some(t) = tenant {
        return TenantId::parse(t)
            .map(Chain::Tenant)
            .map_err(|e| CliError::Usage(format!("--tenant: {e}")));
    }
    let last = last_line(file).map_err(|e| CliError::Io(e.to_string()))?;
    if let Some(chain) = std::str::from_utf8(&last)
        .ok()
        .and_then(export::chain_of_last_line)
    {
        return Ok(chain);
    }
    file.seek(SeekFrom::Start(0))
        .map_err(|e| CliError::Io(e.to_string()))?;
    let mut first = String::new();
    let _ = BufReader::new(&mut *file).read_line(&mut first);
    Ok(match export::parse_line(&first) {
        Ok(export::ExportLine::Event(e)) => e.chain,
        _ => Chain::Provider,
    })
}

/// Reads kept checkpoints: each file's last non-blank line.
fn kept_checkpoints(paths: &[PathBuf]) -> Result<Vec<Checkpoint>, CliError> {
    paths
        .iter()
        .map(|path| {
            let mut file = File::open(path)
                .map_err(|e| CliError::Usage(format!("--checkpoint {}: {e}", path.display())))?;
            let last = last_line(&mut file)
                .map_err(|e| CliError::Usage(format!("--checkpoint {}: {e}", path.display())))?;
            let text = String::from_utf8_lossy(&last);
            export::parse_kept_checkpoint(&text)
                .map_err(|e| CliError::Usage(format!("--checkpoint {}: {e}", path.display())))
        })
        .collect()
}

/// How long fetching an `--idp-jwks` URL may take.
const JWKS_TIMEOUT: Duration = Duration::from_secs(10);

/// A checker trusting every key of the `--idp-jwks` sets (each a file or a
/// URL, checked on its own so that a bad one is named).
async fn evidence_checker(sources: &[String]) -> Result<EvidenceChecker, CliError> {
    let mut keys: Vec<Value> = Vec::new();
    for source in sources {
        let text = if source.starts_with("https://") || source.starts_with("http://") {
            lockbox_client::fetch_document(source, JWKS_TIMEOUT)
                .await
                .map_err(|e| {
                    let why = match e {
                        lockbox_client::ClientError::Transport(why) => why,
                        lockbox_client::ClientError::Api { status, problem } => {
                            format!("HTTP {status}: {}", problem.detail)
                        }
                        e => e.to_string(),
                    };
                    CliError::Io(format!("--idp-jwks {source}: cannot fetch it: {why}"))
                })?
        } else {
            std::fs::read_to_string(source)
                .map_err(|e| CliError::Io(format!("--idp-jwks {source}: cannot read it: {e}")))?
        };
        EvidenceChecker::new(&text)
            .map_err(|e| CliError::Usage(format!("--idp-jwks {source}: {e}")))?;
        let set: Value = serde_json::from_str(&text)
            .map_err(|e| CliError::Usage(format!("--idp-jwks {source}: {e}")))?;
        for key in set
            .get("keys")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            // A key in two sets (kept across a rotation) once: the same
            // `kid` twice would be ambiguous.
            if !keys.contains(key) {
                keys.push(key.clone());
            }
        }
    }
    EvidenceChecker::new(&json!({ "keys": keys }).to_string())
        .map_err(|e| CliError::Usage(format!("--idp-jwks: the keys together: {e}")))
}

/// What the evidence pass found.
#[derive(Debug)]
struct Evidence {
    report: EvidenceReport,
    /// Lines neither an event nor the checkpoint (the chain's verification
    /// fails on them too).
    unreadable: u64,
}

/// Reads the export again, every event leniently (its hash unchecked), in
/// order, through `checker`.
fn evidence_pass(path: &Path, mut checker: EvidenceChecker) -> Result<Evidence, CliError> {
    let file = File::open(path)
        .map_err(|e| CliError::Io(format!("cannot open {}: {e}", path.display())))?;
    let size = file
        .metadata()
        .map_err(|e| CliError::Io(e.to_string()))?
        .len();
    let progress = bar(Some(size), "bytes");
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut line = Vec::new();
    let (mut read, mut unreadable) = (0u64, 0u64);
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| CliError::Io(format!("cannot read {}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        read += n as u64;
        progress.set_position(read);
        let Ok(text) = std::str::from_utf8(&line) else {
            unreadable += 1;
            continue;
        };
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        match serde_json::from_str::<AuditEvent>(text) {
            Ok(event) => checker.observe(&event),
            Err(_) if is_checkpoint_line(text) => {}
            Err(_) => unreadable += 1,
        }
    }
    progress.finish_and_clear();
    Ok(Evidence {
        report: checker.finish(),
        unreadable,
    })
}

/// Whether `line` is the checkpoint line: an object with a `checkpoint`
/// member.
fn is_checkpoint_line(line: &str) -> bool {
    serde_json::from_str::<serde_json::Map<String, Value>>(line)
        .is_ok_and(|members| members.contains_key("checkpoint"))
}

fn verify(
    path: &Path,
    key_args: &[String],
    checkpoint_args: &[PathBuf],
    tenant: Option<&str>,
    evidence: Option<EvidenceChecker>,
    output: Output,
) -> Result<(), CliError> {
    let keys = public_keys(key_args)?;
    let kept = kept_checkpoints(checkpoint_args)?;
    let mut file = File::open(path)
        .map_err(|e| CliError::Io(format!("cannot open {}: {e}", path.display())))?;
    let chain = chain_to_verify(&mut file, tenant)?;
    let size = file
        .seek(SeekFrom::End(0))
        .and_then(|_| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.metadata())
        .map_err(|e| CliError::Io(e.to_string()))?
        .len();
    let progress = bar(Some(size), "bytes");
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut verifier = ExportVerifier::new(chain.clone());
    for cp in kept {
        verifier.expect_checkpoint(cp);
    }
    // Lines are taken apart and hashed in batches on every core, then
    // checked in order.
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    verifier
        .read_all(&mut reader, threads, |read| progress.set_position(read))
        .map_err(|e| CliError::Io(format!("cannot read {}: {e}", path.display())))?;
    progress.finish_and_clear();
    let result = verifier.finish(&keys);
    // Even when the chain fails: a rewritten log is caught by its evidence
    // too, and both are reported.
    let evidence = evidence
        .map(|checker| evidence_pass(path, checker))
        .transpose()?;
    report(
        path,
        &chain,
        result,
        keys.is_empty(),
        evidence.as_ref(),
        output,
    )
}

fn report(
    path: &Path,
    chain: &Chain,
    result: Result<VerifiedChain, ExportError>,
    no_keys: bool,
    evidence: Option<&Evidence>,
    output: Output,
) -> Result<(), CliError> {
    let holds = evidence.is_none_or(|e| e.report.holds());
    match output {
        Output::Json => {
            let mut said = chain_json(chain, &result, no_keys);
            if let (Some(e), Some(members)) = (evidence, said.as_object_mut()) {
                let mut report =
                    serde_json::to_value(&e.report).map_err(|e| CliError::Io(e.to_string()))?;
                if let Some(r) = report.as_object_mut() {
                    r.insert("unreadable_lines".into(), e.unreadable.into());
                }
                members.insert("evidence".into(), report);
            }
            println!("{said}");
        }
        Output::Table => {
            chain_table(path, chain, &result, no_keys);
            if let Some(e) = evidence {
                evidence_table(e);
            }
        }
    }
    if result.is_ok() && holds {
        Ok(())
    } else {
        Err(CliError::NotVerified)
    }
}

/// Decisions listed at most, of those without evidence.
const LISTED: usize = 20;

fn evidence_table(e: &Evidence) {
    let r = &e.report;
    let decisions = |n: usize| {
        if n == 1 {
            "1 decision carries".to_owned()
        } else {
            format!("{n} decisions carry")
        }
    };
    let proven = usize::try_from(r.proven).unwrap_or(usize::MAX);
    let none = format!(
        "{} none{}",
        decisions(r.unproven.len()),
        if r.unproven.is_empty() { "." } else { ":" }
    );
    println!(
        "Evidence: {} valid evidence from the tenant's identity provider; {none}",
        decisions(proven)
    );
    for u in r.unproven.iter().take(LISTED) {
        println!("  {} {} {} by {}", u.seq, u.kind, u.subject, u.actor);
    }
    if r.unproven.len() > LISTED {
        println!("  …and {} more", r.unproven.len() - LISTED);
    }
    if !r.faults.is_empty() {
        let whose = if r.faults.len() == 1 {
            "1 decision's".to_owned()
        } else {
            format!("{} decisions'", r.faults.len())
        };
        println!("{whose} evidence FAILS:");
        for f in &r.faults {
            println!("  {} {} {}: {}", f.seq, f.kind, f.subject, f.reason);
        }
    }
    if e.unreadable > 0 {
        println!(
            "{} lines are not events that can be read; their evidence was not checked.",
            e.unreadable
        );
    }
}

/// Why the chain did not verify, and what may help.
fn chain_fault(
    e: &ExportError,
    no_keys: bool,
) -> (Option<&lockbox_core::ChainFault>, Option<&'static str>) {
    let fault = match e {
        ExportError::Fault(f) => Some(f),
        ExportError::NoCheckpoint => None,
    };
    let hint = (no_keys
        && fault.is_some_and(|f| f.kind == lockbox_core::FaultKind::BadCheckpointSignature))
    .then_some("pass the checkpoint key with --public-key (GET /v1/audit/public-key publishes it)");
    (fault, hint)
}

fn chain_json(chain: &Chain, result: &Result<VerifiedChain, ExportError>, no_keys: bool) -> Value {
    match result {
        Ok(v) => json!({
            "verified": true,
            "tenant": chain.tenant().map(TenantId::as_str),
            "events": v.events,
            "first_seq": v.first_seq,
            "last_seq": v.head.seq,
            "head_hash": v.head.hash.to_string(),
            "checkpoint": v.checkpoint.as_ref(),
        }),
        Err(e) => {
            let (fault, hint) = chain_fault(e, no_keys);
            json!({
                "verified": false,
                "tenant": chain.tenant().map(TenantId::as_str),
                "fault": fault,
                "error": e.to_string(),
                "hint": hint,
            })
        }
    }
}

fn chain_table(
    path: &Path,
    chain: &Chain,
    result: &Result<VerifiedChain, ExportError>,
    no_keys: bool,
) {
    match result {
        Ok(v) => {
            if v.events == 0 {
                println!("Verified: {} holds no events for {chain}.", path.display());
            } else {
                println!(
                    "Verified: {} events of {chain}, {} to {}, every hash and link intact.",
                    v.events, v.first_seq, v.head.seq
                );
            }
            if let Some(cp) = &v.checkpoint {
                println!(
                    "Checkpoint: event {} (head {}) signed at {} by key {}.",
                    cp.seq,
                    cp.head_hash,
                    cp.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                    cp.key_id
                );
            }
        }
        Err(e) => {
            println!("NOT VERIFIED: {}: {e}", path.display());
            if let (_, Some(hint)) = chain_fault(e, no_keys) {
                println!("Hint: {hint}.");
            }
        }
    }
}

async fn tail(
    client: &Client,
    tenant: &str,
    kind: Option<String>,
    lines: u64,
    interval: f64,
    output: Output,
) -> Result<(), CliError> {
    let head = client.audit_head(tenant).await?;
    let mut after = head.seq.saturating_sub(lines);
    let mut stdout = std::io::stdout();
    loop {
        let page = client
            .audit_events(
                tenant,
                &AuditQuery {
                    after_seq: Some(after),
                    kind: kind.clone(),
                    limit: Some(1000),
                    ..AuditQuery::default()
                },
            )
            .await?;
        for event in &page.items {
            let line = match output {
                Output::Json => {
                    serde_json::to_string(event).map_err(|e| CliError::Io(e.to_string()))?
                }
                Output::Table => format!(
                    "{:>8}  {}  {:<24}  {:<22}  {}",
                    event.seq, event.at, event.actor, event.kind, event.subject
                ),
            };
            writeln!(stdout, "{line}").map_err(|e| CliError::Io(e.to_string()))?;
            after = event.seq;
        }
        stdout.flush().map_err(|e| CliError::Io(e.to_string()))?;
        if page.next_cursor.is_none() {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs_f64(interval)) => {}
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
        }
    }
}
