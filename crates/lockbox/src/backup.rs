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
use std::io::{BufRead as _, BufReader, BufWriter, Cursor, Read};
use std::path::{Path, PathBuf};

use lockbox_server::config::{Config, redact_url};
use lockbox_server::kek::Kek;
use lockbox_store::backup::{self, BackupError, Header, Snapshot, Summary};
use lockbox_store::{Store, StoreOptions};

use crate::CliError;
use crate::audit::bar;

/// The file of a SQLite URL (`sqlite://FILE` or `sqlite:FILE`, query
/// left out, percent-escapes decoded, as the driver reads it); `None` for
/// any other database.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let file = rest.split('?').next().unwrap_or(rest);
    if file.is_empty() || file == ":memory:" {
        return None;
    }
    let decoded = percent_encoding::percent_decode_str(file).decode_utf8_lossy();
    Some(PathBuf::from(decoded.as_ref()))
}

/// The file whose lock says a server uses a SQLite database (`None` for
/// any other database): beside the database, in its directory as the
/// filesystem names it, so that every spelling of one file (relative,
/// through a symbolic link, escaped) finds the same lock.
fn lock_path(url: &str) -> Result<Option<PathBuf>, CliError> {
    let Some(file) = sqlite_file(url) else {
        return Ok(None);
    };
    let dir = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let dir = std::fs::canonicalize(&dir).map_err(|e| {
        CliError::NotFound(format!(
            "{}: its directory {} cannot be found: {e}",
            redact_url(url),
            dir.display()
        ))
    })?;
    let mut name = file.file_name().unwrap_or_default().to_owned();
    name.push(".lock");
    Ok(Some(dir.join(name)))
}

/// A lock on a SQLite database's lock file, held while this lives.
#[derive(Debug)]
pub(crate) struct DatabaseLock {
    _file: Option<File>,
}

/// Opens the lock file for reading (a lock needs no more, so a file made
/// by another user locks as well), making it first if need be.
fn open_lock(path: &Path) -> Result<File, CliError> {
    let opened = match File::open(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .or_else(|_| File::open(path)),
        other => other,
    };
    opened.map_err(|e| CliError::Io(format!("cannot open the lock file {}: {e}", path.display())))
}

/// What `lockbox serve` holds while it runs: a shared lock (several
/// servers may share a file, as before), refused while a restore or a
/// migration holds it.
pub(crate) fn serving(url: &str) -> Result<DatabaseLock, CliError> {
    lock(url, true)
}

/// The lock a restore or a migration holds: refused while a server uses
/// the database.
fn exclusive(url: &str) -> Result<DatabaseLock, CliError> {
    lock(url, false)
}

fn lock(url: &str, shared: bool) -> Result<DatabaseLock, CliError> {
    let Some(path) = lock_path(url)? else {
        return Ok(DatabaseLock { _file: None });
    };
    let file = open_lock(&path)?;
    let taken = if shared {
        file.try_lock_shared()
    } else {
        file.try_lock()
    };
    match taken {
        Ok(()) => Ok(DatabaseLock { _file: Some(file) }),
        Err(TryLockError::WouldBlock) if shared => Err(CliError::Conflict(format!(
            "{} is being restored or migrated (`lockbox restore` or `lockbox migrate-db` holds {}): \
             wait for it to finish",
            redact_url(url),
            path.display()
        ))),
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
    if let Some(file) = sqlite_file(url)
        && !file.exists()
    {
        return Err(CliError::NotFound(format!(
            "{}: the file does not exist",
            redact_url(url)
        )));
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
        Some((path, Err(e))) => format!(
            "Its secrets are sealed with KEK {needed}, but the configured KEK file {} does \
             not load ({e}): a server on it needs the file of KEK {needed}.",
            path.display()
        ),
        None => format!(
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
        "Keep it as you keep the database: it holds password and token hashes and secrets."
            .to_owned()
    } else {
        format!(
            "Its sealed secrets need KEK {}: keep that key file, apart from the backup; \
             a restore without it has no signing keys. Keep the backup as you keep the \
             database: it holds password and token hashes and secrets.",
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
        .map_err(|e| cannot_create(path, &e))
}

/// Why the backup's `.partial` file cannot be made, with what to do when
/// an interrupted backup left one.
fn cannot_create(path: &Path, e: &std::io::Error) -> CliError {
    if e.kind() == std::io::ErrorKind::AlreadyExists {
        CliError::Usage(format!(
            "{} exists: an interrupted backup left it; remove it and run the backup again",
            path.display()
        ))
    } else {
        CliError::Io(format!("cannot create {}: {e}", path.display()))
    }
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> Result<File, CliError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| cannot_create(path, &e))
}

/// `lockbox restore FILE` (`-` for standard input): into `config`'s
/// database, which must be empty.
pub(crate) async fn restore(config: &Config, input: &Path) -> Result<(), CliError> {
    let url = &config.database.url;
    let from_stdin = input == Path::new("-");
    let named = if from_stdin {
        "standard input".to_owned()
    } else {
        input.display().to_string()
    };
    let source: Box<dyn Read + Send> = if from_stdin {
        Box::new(std::io::stdin())
    } else {
        Box::new(File::open(input).map_err(|e| CliError::Io(format!("cannot read {named}: {e}")))?)
    };
    let mut reader = BufReader::with_capacity(1 << 20, source);
    // The header, read first so that what is not a backup is refused
    // before anything is opened or made; the restore reads it again (put
    // back in front of the rest) and checks all of it.
    let mut first = String::new();
    reader.read_line(&mut first).map_err(|e| {
        if e.kind() == std::io::ErrorKind::InvalidData {
            CliError::Usage(format!(
                "not a valid Lockbox backup: {named} is not text (compressed? \
                 `gunzip -c FILE | lockbox restore -`)"
            ))
        } else {
            CliError::Io(format!("cannot read {named}: {e}"))
        }
    })?;
    let header = serde_json::from_str::<Header>(&first)
        .ok()
        .filter(|h| h.format == backup::FORMAT)
        .ok_or_else(|| {
            CliError::Usage(format!(
                "not a valid Lockbox backup: the first line of {named} is not a backup's header"
            ))
        })?;
    let total = Some(header.rows());
    let file = Cursor::new(first.into_bytes()).chain(reader);
    let _lock = exclusive(url)?;
    let target = Store::connect(url, options())
        .await
        .map_err(|e| CliError::Server(e.to_string()))?;
    let progress = bar(total, "rows");
    let mut show = |_: &str, rows: u64| progress.set_position(rows);
    let restored = backup::restore(file, &target, &mut show).await;
    progress.finish_and_clear();
    target.close().await;
    let summary = restored.map_err(failed)?;
    println!(
        "Restored {} into {}: {}; migrated to schema version {}.",
        named,
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
    let source = existing(from).await?;
    let _source_lock = exclusive(from)?;
    let _target_lock = exclusive(to)?;
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
    fn every_spelling_of_a_sqlite_file_finds_one_lock_beside_it() {
        let dir = std::env::temp_dir().join(format!("lockbox-lockpath-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let dir = std::fs::canonicalize(&dir).unwrap();
        let lock = Some(dir.join("my db.db.lock"));
        let plain = format!("{}/my db.db", dir.display());
        for url in [
            format!("sqlite://{plain}?mode=rwc"),
            format!("sqlite:{plain}"),
            format!("sqlite://{}/my%20db.db", dir.display()),
            format!("sqlite://{}/sub/../my db.db", dir.display()),
        ] {
            assert_eq!(lock_path(&url).unwrap(), lock, "{url}");
        }
        assert_eq!(lock_path("postgres://db/lockbox").unwrap(), None);
        assert_eq!(lock_path("sqlite://").unwrap(), None);
        assert!(matches!(
            lock_path("sqlite:///no/such/dir/lockbox.db"),
            Err(CliError::NotFound(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_server_and_a_restore_exclude_each_other() {
        let dir = std::env::temp_dir().join(format!("lockbox-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}/lockbox.db", dir.display());
        let first = serving(&url).unwrap();
        let second = serving(&url).unwrap();
        assert!(matches!(exclusive(&url), Err(CliError::Conflict(_))));
        // The same file, spelt otherwise.
        let other = format!("sqlite:{}/./lockbox.db", dir.display());
        assert!(matches!(exclusive(&other), Err(CliError::Conflict(_))));
        drop((first, second));
        let restoring = exclusive(&url).unwrap();
        assert!(matches!(serving(&url), Err(CliError::Conflict(_))));
        drop(restoring);
        serving(&url).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
