//! `lockbox backup`, `lockbox restore` and `lockbox migrate-db`: the
//! logical backups of `lockbox_store::backup`, with files, progress and
//! the locks that keep a server and a restore apart.
//!
//! A server on a SQLite database holds a shared lock on a file beside it
//! (`lockbox.db` → `lockbox.db.lock`) while it runs; a restore into a
//! SQLite file and `migrate-db` from one take that lock exclusively, so
//! that neither runs while a server uses the file and no server starts
//! while they run. On PostgreSQL the nodes' heartbeats say whether a
//! server is running.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use lockbox_server::config::{Config, redact_url};
use lockbox_server::kek::Kek;
use lockbox_store::backup::{self, BackupError, Header, Snapshot, Summary};
use lockbox_store::{Store, StoreOptions};

use crate::CliError;
use crate::audit::bar;

/// The file whose lock says a server uses a SQLite database; `None` for
/// any other database.
fn lock_path(url: &str) -> Option<PathBuf> {
    let file = url.strip_prefix("sqlite://")?;
    let file = file.split('?').next().unwrap_or(file);
    if file.is_empty() {
        return None;
    }
    let mut name = Path::new(file).as_os_str().to_owned();
    name.push(".lock");
    Some(PathBuf::from(name))
}

/// A lock on a SQLite database's lock file, held while this lives.
#[derive(Debug)]
pub(crate) struct DatabaseLock {
    _file: Option<File>,
}

fn open_lock(path: &Path) -> Result<File, CliError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| CliError::Io(format!("cannot open the lock file {}: {e}", path.display())))
}

/// What `lockbox serve` holds while it runs: a shared lock (several
/// servers may share a file, as before), refused while a restore or a
/// migration holds it.
pub(crate) fn serving(url: &str) -> Result<DatabaseLock, CliError> {
    let Some(path) = lock_path(url) else {
        return Ok(DatabaseLock { _file: None });
    };
    let file = open_lock(&path)?;
    match file.try_lock_shared() {
        Ok(()) => Ok(DatabaseLock { _file: Some(file) }),
        Err(TryLockError::WouldBlock) => Err(CliError::Conflict(format!(
            "{} is being restored or migrated (`lockbox restore` or `lockbox migrate-db` holds {}): \
             wait for it to finish",
            redact_url(url),
            path.display()
        ))),
        Err(TryLockError::Error(e)) => {
            Err(CliError::Io(format!("cannot lock {}: {e}", path.display())))
        }
    }
}

/// The lock a restore or a migration holds: refused while a server uses
/// the database.
fn exclusive(url: &str) -> Result<DatabaseLock, CliError> {
    let Some(path) = lock_path(url) else {
        return Ok(DatabaseLock { _file: None });
    };
    let file = open_lock(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(DatabaseLock { _file: Some(file) }),
        Err(TryLockError::WouldBlock) => Err(CliError::Conflict(format!(
            "a Lockbox server is using {} (it holds {}): stop it first",
            redact_url(url),
            path.display()
        ))),
        Err(TryLockError::Error(e)) => {
            Err(CliError::Io(format!("cannot lock {}: {e}", path.display())))
        }
    }
}

/// Refuses a PostgreSQL database on which a node has sent a heartbeat
/// lately.
async fn no_live_nodes(store: &Store, url: &str) -> Result<(), CliError> {
    let live = store.live_nodes().await.map_err(|e| e.to_string())?;
    if live.is_empty() {
        return Ok(());
    }
    Err(CliError::Conflict(format!(
        "{} Lockbox node(s) are running on {} ({}): stop every node first",
        live.len(),
        redact_url(url),
        live.join(", ")
    )))
}

fn options() -> StoreOptions {
    StoreOptions {
        max_connections: 2,
        ..StoreOptions::default()
    }
}

/// Connects to a database that must exist (a SQLite file is never made
/// here).
async fn existing(url: &str) -> Result<Store, CliError> {
    if let Some(file) = url.strip_prefix("sqlite://") {
        let file = file.split('?').next().unwrap_or(file);
        if !Path::new(file).exists() {
            return Err(CliError::NotFound(format!(
                "{}: the file does not exist",
                redact_url(url)
            )));
        }
    }
    Store::connect(url, options())
        .await
        .map_err(|e| CliError::Server(e.to_string()))
}

fn failed(e: BackupError) -> CliError {
    match e {
        BackupError::Store(e) => CliError::Server(e.to_string()),
        BackupError::Io(e) => CliError::Io(e.to_string()),
        e @ BackupError::Malformed(_) => CliError::Usage(e.to_string()),
        BackupError::Refused(why) => CliError::Conflict(why),
    }
}

/// What a restore or a copy tells about the keys: which KEK the data
/// needs, and whether the configured one is it.
fn keks_said(header: &Header, kek_file: Option<&Path>) -> String {
    if header.keks.is_empty() {
        return "It holds no sealed secrets: any key-encryption key will do.".to_owned();
    }
    let needed = header.keks.join(", ");
    let configured = kek_file.map(|path| (path, Kek::load(path)));
    match configured {
        Some((_, Ok(kek))) if header.keks.iter().any(|k| k == kek.id()) => {
            format!(
                "Its secrets are sealed with KEK {needed}: the configured KEK file is that one."
            )
        }
        Some((path, Ok(kek))) => format!(
            "Its secrets are sealed with KEK {needed}, but {} holds KEK {}: configure the file \
             of KEK {needed} before starting a server on it.",
            path.display(),
            kek.id()
        ),
        _ => format!(
            "Its secrets are sealed with KEK {needed}: a server on it needs that key file \
             (`[keys] kek_file`, `--kek-file`)."
        ),
    }
}

fn summary_line(summary: &Summary) -> String {
    let h = &summary.header;
    format!(
        "{} rows in {} tables, schema version {}, read from {} at {}",
        h.rows(),
        h.tables.len(),
        h.schema,
        h.backend,
        lockbox_core::Timestamp::from_timestamp_micros(h.made_at_us)
            .map_or_else(|| h.made_at_us.to_string(), |t| t.to_rfc3339())
    )
}

/// `lockbox backup -o FILE`: one snapshot of `config`'s database into a
/// new file (mode 0600; written as `FILE.partial` and renamed when
/// whole), or to standard output with `-o -`.
pub(crate) async fn backup(config: &Config, output: &Path) -> Result<(), CliError> {
    let url = &config.database.url;
    let store = existing(url).await?;
    let snapshot = Snapshot::begin(&store).await.map_err(failed)?;
    let total = snapshot.header().rows();
    let progress = bar(Some(total), "rows");
    let mut show = |_: &str, rows: u64| progress.set_position(rows);
    let summary = if output == Path::new("-") {
        let mut out = BufWriter::with_capacity(1 << 20, std::io::stdout());
        let written = snapshot.write(&mut out, &mut show).await.map_err(failed);
        progress.finish_and_clear();
        written?
    } else {
        if output.exists() {
            return Err(CliError::Usage(format!(
                "{} exists: a backup never overwrites a file",
                output.display()
            )));
        }
        let mut partial = output.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let file = private_file(&partial)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let written = snapshot.write(&mut out, &mut show).await;
        progress.finish_and_clear();
        let done = written.map_err(failed).and_then(|summary| {
            let file = out
                .into_inner()
                .map_err(|e| CliError::Io(format!("cannot write {}: {e}", partial.display())))?;
            file.sync_all()
                .map_err(|e| CliError::Io(format!("cannot write {}: {e}", partial.display())))?;
            std::fs::rename(&partial, output)
                .map_err(|e| CliError::Io(format!("cannot rename {}: {e}", partial.display())))?;
            Ok(summary)
        });
        match done {
            Ok(summary) => summary,
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                return Err(e);
            }
        }
    };
    store.close().await;
    let said = format!(
        "Backed up {} to {}: {}.\n{}",
        redact_url(url),
        output.display(),
        summary_line(&summary),
        keks_needed(&summary.header)
    );
    // The backup itself may be on standard output.
    if output == Path::new("-") {
        eprintln!("{said}");
    } else {
        println!("{said}");
    }
    Ok(())
}

/// What a backup says about its KEK: which file to keep beside it.
fn keks_needed(header: &Header) -> String {
    if header.keks.is_empty() {
        "It holds no sealed secrets.".to_owned()
    } else {
        format!(
            "Its secrets are sealed with KEK {}: keep that key file, apart from the backup; \
             a restore without it has no signing keys.",
            header.keks.join(", ")
        )
    }
}

#[cfg(unix)]
fn private_file(path: &Path) -> Result<File, CliError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| CliError::Io(format!("cannot create {}: {e}", path.display())))
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> Result<File, CliError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| CliError::Io(format!("cannot create {}: {e}", path.display())))
}

/// `lockbox restore FILE`: into `config`'s database, which must be empty.
pub(crate) async fn restore(config: &Config, input: &Path) -> Result<(), CliError> {
    let url = &config.database.url;
    let file = File::open(input)
        .map_err(|e| CliError::Io(format!("cannot read {}: {e}", input.display())))?;
    // The header, read first so that a file that is not a backup is
    // refused before anything is opened or made; the restore reads it
    // again and checks all of it.
    let mut first = String::new();
    std::io::BufRead::read_line(&mut BufReader::new(&file), &mut first)
        .map_err(|e| CliError::Io(format!("cannot read {}: {e}", input.display())))?;
    let header = serde_json::from_str::<Header>(&first)
        .ok()
        .filter(|h| h.format == backup::FORMAT)
        .ok_or_else(|| {
            CliError::Usage(format!(
                "not a valid Lockbox backup: the first line of {} is not a backup's header",
                input.display()
            ))
        })?;
    let total = Some(header.rows());
    let file = File::open(input)
        .map_err(|e| CliError::Io(format!("cannot read {}: {e}", input.display())))?;
    let _lock = exclusive(url)?;
    let target = Store::connect(url, options())
        .await
        .map_err(|e| CliError::Server(e.to_string()))?;
    let progress = bar(total, "rows");
    let mut show = |_: &str, rows: u64| progress.set_position(rows);
    let restored =
        backup::restore(BufReader::with_capacity(1 << 20, file), &target, &mut show).await;
    progress.finish_and_clear();
    target.close().await;
    let summary = restored.map_err(failed)?;
    println!(
        "Restored {} into {}: {}; migrated to schema version {}.",
        input.display(),
        redact_url(url),
        summary_line(&summary),
        summary
            .schema_after
            .map_or_else(|| "?".to_owned(), |v| v.to_string())
    );
    println!(
        "{}",
        keks_said(&summary.header, config.keys.kek_file.as_deref())
    );
    Ok(())
}

/// `lockbox migrate-db --from URL --to URL`: everything in the source,
/// read in one snapshot, into an empty target; refused while a server
/// uses the source.
pub(crate) async fn migrate_db(
    from: &str,
    to: &str,
    kek_file: Option<&Path>,
) -> Result<(), CliError> {
    if from == to {
        return Err(CliError::Usage(
            "--from and --to name the same database".into(),
        ));
    }
    let _source_lock = exclusive(from)?;
    let _target_lock = exclusive(to)?;
    let source = existing(from).await?;
    no_live_nodes(&source, from).await?;
    let target = Store::connect(to, options())
        .await
        .map_err(|e| CliError::Server(e.to_string()))?;
    let started = std::time::Instant::now();
    let snapshot = Snapshot::begin(&source).await.map_err(failed)?;
    let progress = bar(Some(snapshot.header().rows()), "rows");
    let mut show = |table: &str, rows: u64| {
        progress.set_message(table.to_owned());
        progress.set_position(rows);
    };
    let copied = snapshot.copy_into(&target, &mut show).await;
    progress.finish_and_clear();
    source.close().await;
    target.close().await;
    let summary = copied.map_err(failed)?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "Copied {} into {} in {seconds:.1} s ({:.0} rows/s): {}; the target is at schema version {}.",
        redact_url(from),
        redact_url(to),
        summary.header.rows() as f64 / seconds.max(1e-3),
        summary_line(&summary),
        summary
            .schema_after
            .map_or_else(|| "?".to_owned(), |v| v.to_string())
    );
    println!("{}", keks_said(&summary.header, kek_file));
    println!(
        "Point the servers at {} (`[database] url`), and keep {} until they run well.",
        redact_url(to),
        redact_url(from)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_sqlite_database_has_a_lock_file_beside_it() {
        assert_eq!(
            lock_path("sqlite:///var/lib/lockbox/lockbox.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/lockbox/lockbox.db.lock"))
        );
        assert_eq!(
            lock_path("sqlite://lockbox.db"),
            Some(PathBuf::from("lockbox.db.lock"))
        );
        assert_eq!(lock_path("postgres://db/lockbox"), None);
        assert_eq!(lock_path("sqlite://"), None);
    }

    #[test]
    fn a_server_and_a_restore_exclude_each_other() {
        let dir = std::env::temp_dir().join(format!("lockbox-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}/lockbox.db", dir.display());
        let first = serving(&url).unwrap();
        let second = serving(&url).unwrap();
        assert!(matches!(exclusive(&url), Err(CliError::Conflict(_))));
        drop((first, second));
        let restoring = exclusive(&url).unwrap();
        assert!(matches!(serving(&url), Err(CliError::Conflict(_))));
        drop(restoring);
        serving(&url).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
