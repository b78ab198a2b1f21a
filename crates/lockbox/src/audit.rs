//! `lockbox audit export | verify | tail`.
//!
//! `verify` works offline: it reads the export file and the public key and
//! nothing else (no server, no database), in constant memory, and names the
//! first bad event.

use std::fs::File;
use std::io::{
    BufRead as _, BufReader, IsTerminal as _, Read as _, Seek as _, SeekFrom, Write as _,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use lockbox_client::{AuditQuery, Client};
use lockbox_core::audit::export::{self, ExportError, ExportVerifier};
use lockbox_core::{Chain, Checkpoint, PublicKey, TenantId, VerifiedChain};
use serde_json::json;

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
    /// sequence, and the checkpoint's signature. Exits 0 if it verifies,
    /// 1 if it does not (naming the first bad event), 2 if it cannot be
    /// read.
    #[command(after_help = "Examples:\n  \
        curl -s https://lockbox.example.com/v1/audit/public-key > lockbox-key.json\n  \
        lockbox audit verify contoso-audit.ndjson --public-key lockbox-key.json\n  \
        lockbox audit verify audit.ndjson --public-key 3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c --output json")]
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
            output,
        } => verify(&file, &public_keys, &checkpoints, tenant.as_deref(), output),
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

fn bar(len: Option<u64>, unit: &str) -> ProgressBar {
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

fn verify(
    path: &Path,
    key_args: &[String],
    checkpoint_args: &[PathBuf],
    tenant: Option<&str>,
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
    report(
        path,
        &chain,
        verifier.finish(&keys),
        keys.is_empty(),
        output,
    )
}

fn report(
    path: &Path,
    chain: &Chain,
    result: Result<VerifiedChain, ExportError>,
    no_keys: bool,
    output: Output,
) -> Result<(), CliError> {
    match (result, output) {
        (Ok(v), Output::Json) => {
            let cp = v.checkpoint.as_ref();
            println!(
                "{}",
                json!({
                    "verified": true,
                    "tenant": chain.tenant().map(TenantId::as_str),
                    "events": v.events,
                    "first_seq": v.first_seq,
                    "last_seq": v.head.seq,
                    "head_hash": v.head.hash.to_string(),
                    "checkpoint": cp,
                })
            );
            Ok(())
        }
        (Ok(v), Output::Table) => {
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
            Ok(())
        }
        (Err(e), output) => {
            let fault = match &e {
                ExportError::Fault(f) => Some(f),
                ExportError::NoCheckpoint => None,
            };
            let hint = (no_keys
                && fault
                    .is_some_and(|f| f.kind == lockbox_core::FaultKind::BadCheckpointSignature))
            .then_some(
                "pass the checkpoint key with --public-key (GET /v1/audit/public-key publishes it)",
            );
            match output {
                Output::Json => println!(
                    "{}",
                    json!({
                        "verified": false,
                        "tenant": chain.tenant().map(TenantId::as_str),
                        "fault": fault,
                        "error": e.to_string(),
                        "hint": hint,
                    })
                ),
                Output::Table => {
                    println!("NOT VERIFIED: {}: {e}", path.display());
                    if let Some(hint) = hint {
                        println!("Hint: {hint}.");
                    }
                }
            }
            Err(CliError::NotVerified)
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
