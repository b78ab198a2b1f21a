//! Logical backups: every table of a Lockbox database, read in one
//! snapshot, as a file that restores into an empty database of either
//! backend; and a copy from one database straight into another
//! (`lockbox backup`, `restore`, `migrate-db`).
//!
//! The two backends' schemas are the same by design: every column is an
//! integer (times in µs, flags 0/1), text (ids, JSON) or bytes (hashes,
//! sealed secrets), there are no sequences, and each migration exists on
//! both. So a row read from one restores into the other unchanged, and
//! what the rows mean (audit hashes, checkpoints' signatures, sealed keys)
//! is carried byte for byte.
//!
//! A backup file is UTF-8 JSON, one value per line:
//!
//! 1. the [`Header`]: the schema version, the tables in the order they
//!    restore in (parents before children), each with its columns and
//!    kinds and its row count, and the key-encryption keys (KEKs) that the
//!    sealed secrets in it need;
//! 2. for each table, a line `{"table":NAME}`, then one JSON array per row
//!    (integers as numbers, text as strings, bytes as lowercase hex,
//!    `NULL` as `null`);
//! 3. a last line `{"end":{"rows":N,"sha256":HEX}}`: the rows written
//!    and the SHA-256 of every byte before this line, so that a truncated
//!    or damaged file is refused rather than half restored.
//!
//! A restore goes into an empty database in one transaction: the
//! backup's own schema version made by this version's migrations (DDL is
//! transactional on both backends), then every row; either everything is
//! restored or nothing, schema included. The audit events go in chain by
//! chain, in order, through the database's own chain trigger from an empty
//! head, so the database checks every link again; the heads it arrives at
//! must be the backup's. Then the database is migrated to this version's
//! schema. The end line's digest catches a file cut short or damaged; it
//! is no signature (anyone can write one), and what proves the audit
//! chains is `lockbox audit verify` against checkpoints kept elsewhere.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{BufRead, Write};

use futures_util::TryStreamExt as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Any, AssertSqlSafe, Row as _, Transaction};

use crate::error::{StoreError, classify};
use crate::{Backend, SCHEMA_VERSION, Store, migrations};

/// What the first line of a backup says it is.
pub const FORMAT: &str = "lockbox-backup";
/// The version of the backup format this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The table sqlx keeps its migrations in: made by the restore's own
/// migration, never copied.
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// Most parameters in one `INSERT` (SQLite allows 32 766, PostgreSQL
/// 65 535).
const MAX_PARAMS: usize = 16_000;
/// Most rows in one `INSERT`.
const MAX_BATCH: usize = 1_000;

/// The PostgreSQL advisory lock a load holds for its transaction, so that
/// two loads into one database never interleave.
const LOAD_LOCK: i64 = 0x6c6f_636b_626f_7801;

/// Why a backup, restore or copy did not happen.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The backup file could not be read or written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The file is not a whole, unedited Lockbox backup.
    #[error("not a valid Lockbox backup: {0}")]
    Malformed(String),
    /// The databases are not in a state to copy from or into.
    #[error("{0}")]
    Refused(String),
}

fn malformed(what: impl Into<String>) -> BackupError {
    BackupError::Malformed(what.into())
}

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A 64-bit integer (`INTEGER`, `BIGINT`).
    Int,
    /// Text (`TEXT`).
    Text,
    /// Bytes (`BLOB`, `BYTEA`).
    Bytes,
}

impl Kind {
    fn of(backend: Backend, declared: &str) -> Option<Self> {
        let declared = declared.to_ascii_lowercase();
        match (backend, declared.as_str()) {
            (Backend::Sqlite, "integer") | (Backend::Postgres, "bigint" | "integer") => {
                Some(Self::Int)
            }
            (Backend::Sqlite, "text") | (Backend::Postgres, "text") => Some(Self::Text),
            (Backend::Sqlite, "blob") | (Backend::Postgres, "bytea") => Some(Self::Bytes),
            _ => None,
        }
    }
}

/// A column of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// What it holds.
    pub kind: Kind,
}

/// A table as the backup holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableInfo {
    /// Its name.
    pub name: String,
    /// Its columns, in the order of each row.
    pub columns: Vec<Column>,
    /// How many rows it has.
    pub rows: u64,
}

/// The first line of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// The database's schema version (its newest migration).
    pub schema: i64,
    /// The backend it was read from (`sqlite`, `postgres`).
    pub backend: String,
    /// When the snapshot was read, by the database's clock (µs since the
    /// epoch).
    pub made_at_us: i64,
    /// The key-encryption keys that sealed the secrets in it (signing
    /// keys, SSH authorities, identity providers' client secrets): a
    /// server on the restored database needs one of these files.
    pub keks: Vec<String>,
    /// The tables, in the order they restore in.
    pub tables: Vec<TableInfo>,
}

impl Header {
    /// Rows in every table.
    #[must_use]
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
}

/// What was backed up, restored or copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The source's header.
    pub header: Header,
    /// The target's schema version afterwards (restore and copy).
    pub schema_after: Option<i64>,
}

/// Told how far a backup, restore or copy has come: the table being
/// copied and the rows copied so far, in all.
pub type Progress<'a> = &'a mut (dyn FnMut(&str, u64) + Send);

/// One value of a row.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Int(Option<i64>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
}

impl Value {
    fn read(row: &AnyRow, i: usize, kind: Kind) -> Result<Self, StoreError> {
        Ok(match kind {
            Kind::Int => Self::Int(row.try_get(i).map_err(classify)?),
            Kind::Text => Self::Text(row.try_get(i).map_err(classify)?),
            Kind::Bytes => Self::Bytes(row.try_get(i).map_err(classify)?),
        })
    }

    fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Self::Int(Some(n)) => J::from(*n),
            Self::Text(Some(s)) => J::from(s.as_str()),
            Self::Bytes(Some(b)) => J::from(hex::encode(b)),
            Self::Int(None) | Self::Text(None) | Self::Bytes(None) => J::Null,
        }
    }

    fn from_json(value: serde_json::Value, kind: Kind) -> Option<Self> {
        use serde_json::Value as J;
        Some(match (value, kind) {
            (J::Null, Kind::Int) => Self::Int(None),
            (J::Null, Kind::Text) => Self::Text(None),
            (J::Null, Kind::Bytes) => Self::Bytes(None),
            (J::Number(n), Kind::Int) => Self::Int(Some(n.as_i64()?)),
            (J::String(s), Kind::Text) => Self::Text(Some(s)),
            (J::String(s), Kind::Bytes) => Self::Bytes(Some(hex::decode(s).ok()?)),
            _ => return None,
        })
    }

    fn bind<'q>(
        self,
        q: sqlx::query::Query<'q, Any, AnyArguments>,
    ) -> sqlx::query::Query<'q, Any, AnyArguments> {
        match self {
            Self::Int(v) => q.bind(v),
            Self::Text(v) => q.bind(v),
            Self::Bytes(v) => q.bind(v),
        }
    }
}

/// A table as the catalog describes it.
#[derive(Debug, Clone)]
struct Described {
    columns: Vec<Column>,
    primary_key: Vec<String>,
    /// Tables it references (its own name for a self-reference) and the
    /// referencing column.
    references: Vec<(String, String)>,
}

/// The tables of the database a transaction runs on, in restore order.
async fn describe(
    conn: &mut Transaction<'static, Any>,
    backend: Backend,
) -> Result<Vec<(String, Described)>, StoreError> {
    let names: Vec<String> = match backend {
        Backend::Sqlite => sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
        ),
        Backend::Postgres => sqlx::query_scalar(
            "SELECT c.relname::TEXT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') ORDER BY c.relname",
        ),
    }
    .fetch_all(&mut **conn)
    .await
    .map_err(classify)?;
    let mut tables = BTreeMap::new();
    for name in names.into_iter().filter(|n| n != MIGRATIONS_TABLE) {
        let described = describe_table(conn, backend, &name).await?;
        tables.insert(name, described);
    }
    restore_order(tables)
}

async fn describe_table(
    conn: &mut Transaction<'static, Any>,
    backend: Backend,
    table: &str,
) -> Result<Described, StoreError> {
    let (columns_sql, key_sql, references_sql) = match backend {
        Backend::Sqlite => (
            "SELECT name, type FROM pragma_table_info($1) ORDER BY cid",
            "SELECT name FROM pragma_table_info($1) WHERE pk > 0 ORDER BY pk",
            "SELECT \"table\", \"from\" FROM pragma_foreign_key_list($1) ORDER BY id, seq",
        ),
        Backend::Postgres => (
            "SELECT a.attname::TEXT, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
             JOIN pg_class t ON t.oid = a.attrelid JOIN pg_namespace n ON n.oid = t.relnamespace \
             WHERE n.nspname = current_schema() AND t.relname = $1 \
               AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            "SELECT a.attname::TEXT FROM pg_constraint c \
             JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace \
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey) \
             WHERE c.contype = 'p' AND n.nspname = current_schema() AND t.relname = $1 \
             ORDER BY array_position(c.conkey, a.attnum)",
            "SELECT p.relname::TEXT, a.attname::TEXT FROM pg_constraint c \
             JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace \
             JOIN pg_class p ON p.oid = c.confrelid \
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey) \
             WHERE c.contype = 'f' AND n.nspname = current_schema() AND t.relname = $1 \
             ORDER BY a.attname",
        ),
    };
    let columns = sqlx::query_as::<_, (String, String)>(columns_sql)
        .bind(table.to_owned())
        .fetch_all(&mut **conn)
        .await
        .map_err(classify)?
        .into_iter()
        .map(|(name, declared)| {
            let kind = Kind::of(backend, &declared).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "column {table}.{name} is of type {declared}, which Lockbox's schema never uses"
                ))
            })?;
            Ok(Column { name, kind })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let primary_key = sqlx::query_scalar(key_sql)
        .bind(table.to_owned())
        .fetch_all(&mut **conn)
        .await
        .map_err(classify)?;
    let references = sqlx::query_as::<_, (String, String)>(references_sql)
        .bind(table.to_owned())
        .fetch_all(&mut **conn)
        .await
        .map_err(classify)?;
    Ok(Described {
        columns,
        primary_key,
        references,
    })
}

/// Parents before children (by foreign key), and `audit_heads` before
/// `audit_events`, whose trigger advances the heads; otherwise by name.
fn restore_order(
    mut tables: BTreeMap<String, Described>,
) -> Result<Vec<(String, Described)>, StoreError> {
    let mut placed = BTreeSet::new();
    let mut order = Vec::with_capacity(tables.len());
    while !tables.is_empty() {
        let ready = tables
            .iter()
            .find(|(name, t)| {
                let mut parents = t.references.iter().map(|(parent, _)| parent.as_str());
                let heads_first = name.as_str() != "audit_events" || placed.contains("audit_heads");
                heads_first && parents.all(|p| p == name.as_str() || placed.contains(p))
            })
            .map(|(name, _)| name.clone())
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "the foreign keys of {} form a cycle",
                    tables.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            })?;
        if let Some(t) = tables.remove(&ready) {
            placed.insert(ready.clone());
            order.push((ready, t));
        }
    }
    Ok(order)
}

fn quoted(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Every table of `store` in one consistent snapshot.
pub struct Snapshot {
    tx: Transaction<'static, Any>,
    header: Header,
    described: Vec<(String, Described)>,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl Snapshot {
    /// Starts reading `store` in one snapshot (SQLite: a read transaction,
    /// which sees the database as of its first read while writers go on;
    /// PostgreSQL: `REPEATABLE READ READ ONLY`) and reads its catalog and
    /// row counts. Refuses a database that Lockbox has not migrated, or one
    /// of a newer schema than this version knows.
    pub async fn begin(store: &Store) -> Result<Self, BackupError> {
        let backend = store.backend();
        let begin = match backend {
            Backend::Sqlite => "BEGIN",
            Backend::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        };
        let mut tx = store
            .inner
            .reader
            .begin_with(begin)
            .await
            .map_err(classify)?;
        // The snapshot is fixed by the first read of a table (the catalog,
        // below): everything after it sees the same database.
        let clock = match backend {
            Backend::Sqlite => {
                "SELECT CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)"
            }
            Backend::Postgres => "SELECT CAST(EXTRACT(EPOCH FROM now()) * 1000000 AS BIGINT)",
        };
        let made_at_us: i64 = sqlx::query_scalar(clock)
            .fetch_one(&mut *tx)
            .await
            .map_err(classify)?;
        let described = describe(&mut tx, backend).await?;
        if !described.iter().any(|(name, _)| name == "audit_events") {
            return Err(BackupError::Refused(
                "the database holds no Lockbox tables: nothing to back up".into(),
            ));
        }
        let schema: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT MAX(version) FROM {MIGRATIONS_TABLE}"
        )))
        .fetch_one(&mut *tx)
        .await
        .map_err(classify)?;
        let schema = schema.ok_or_else(|| {
            BackupError::Refused("the database has no schema version: is it Lockbox's?".into())
        })?;
        if schema > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                found: schema,
                known: SCHEMA_VERSION,
            }
            .into());
        }
        let mut tables = Vec::with_capacity(described.len());
        let mut keks = BTreeSet::new();
        for (name, table) in &described {
            let rows: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT COUNT(*) FROM {}",
                quoted(name)
            )))
            .fetch_one(&mut *tx)
            .await
            .map_err(classify)?;
            if table.columns.iter().any(|c| c.name == "kek_id") {
                let ids: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
                    "SELECT DISTINCT kek_id FROM {} WHERE kek_id IS NOT NULL",
                    quoted(name)
                )))
                .fetch_all(&mut *tx)
                .await
                .map_err(classify)?;
                keks.extend(ids);
            }
            tables.push(TableInfo {
                name: name.clone(),
                columns: table.columns.clone(),
                rows: u64::try_from(rows).unwrap_or_default(),
            });
        }
        Ok(Self {
            tx,
            header: Header {
                format: FORMAT.to_owned(),
                version: FORMAT_VERSION,
                schema,
                backend: backend.to_string(),
                made_at_us,
                keks: keks.into_iter().collect(),
                tables,
            },
            described,
        })
    }

    /// What the snapshot holds.
    #[must_use]
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Reads every row of every table, in restore order, handing each to
    /// `row` with its table's position in the header.
    async fn each_row<F>(mut self, mut row: F) -> Result<(), BackupError>
    where
        F: AsyncRowSink,
    {
        for (k, (name, table)) in self.described.iter().enumerate() {
            let columns: Vec<String> = table.columns.iter().map(|c| quoted(&c.name)).collect();
            // Rows that reference their own table come after the rows they
            // reference (a request's extension after the request; an
            // extension is never extended, so one level is enough).
            let mut order: Vec<String> = table
                .references
                .iter()
                .filter(|(parent, _)| parent == name)
                .map(|(_, column)| format!("{} IS NOT NULL", quoted(column)))
                .collect();
            order.extend(table.primary_key.iter().map(|c| quoted(c)));
            let mut sql = format!("SELECT {} FROM {}", columns.join(", "), quoted(name));
            if !order.is_empty() {
                sql.push_str(" ORDER BY ");
                sql.push_str(&order.join(", "));
            }
            let kinds: Vec<Kind> = table.columns.iter().map(|c| c.kind).collect();
            let mut rows = sqlx::query(AssertSqlSafe(sql)).fetch(&mut *self.tx);
            row.table(k).await?;
            while let Some(r) = rows.try_next().await.map_err(classify)? {
                let values = kinds
                    .iter()
                    .enumerate()
                    .map(|(i, kind)| Value::read(&r, i, *kind))
                    .collect::<Result<Vec<_>, _>>()?;
                row.row(k, values).await?;
            }
        }
        self.tx.rollback().await.map_err(classify)?;
        Ok(())
    }

    /// Writes the snapshot as a backup file (see the module's
    /// documentation) to `out`.
    pub async fn write(
        self,
        out: &mut (dyn Write + Send),
        progress: Progress<'_>,
    ) -> Result<Summary, BackupError> {
        let header = self.header.clone();
        let mut file = FileSink {
            out: Hashing::new(out),
            header: &header,
            rows: 0,
            table: None,
            progress,
        };
        file.out
            .line(&serde_json::to_value(&header).map_err(json_error)?)?;
        self.each_row(&mut file).await?;
        file.close_table()?;
        let FileSink { out, rows, .. } = file;
        let (out, digest) = out.finish();
        let end = serde_json::json!({ "end": { "rows": rows, "sha256": hex::encode(digest) } });
        serde_json::to_writer(&mut *out, &end).map_err(json_error)?;
        out.write_all(b"\n")?;
        out.flush()?;
        Ok(Summary {
            header,
            schema_after: None,
        })
    }

    /// Copies the snapshot into `target`, an empty database, as [`restore`]
    /// restores a file (one transaction, the same checks, the target left
    /// empty if any fails), then migrates it to this version's schema.
    pub async fn copy_into(
        self,
        target: &Store,
        progress: Progress<'_>,
    ) -> Result<Summary, BackupError> {
        let header = self.header.clone();
        let mut loader = Loader::begin(target, &header).await?;
        let mut sink = CopySink {
            loader: &mut loader,
            rows: 0,
            progress,
        };
        let filled = self.each_row(&mut sink).await;
        loader.complete(filled).await?;
        let schema_after = finish_restore(target).await?;
        Ok(Summary {
            header,
            schema_after,
        })
    }
}

fn json_error(e: serde_json::Error) -> BackupError {
    BackupError::Io(std::io::Error::other(e))
}

/// Where [`Snapshot::each_row`] puts what it reads.
trait AsyncRowSink {
    /// Table `k` of the header begins.
    async fn table(&mut self, k: usize) -> Result<(), BackupError>;
    /// A row of table `k`.
    async fn row(&mut self, k: usize, values: Vec<Value>) -> Result<(), BackupError>;
}

impl<T: AsyncRowSink> AsyncRowSink for &mut T {
    async fn table(&mut self, k: usize) -> Result<(), BackupError> {
        (**self).table(k).await
    }
    async fn row(&mut self, k: usize, values: Vec<Value>) -> Result<(), BackupError> {
        (**self).row(k, values).await
    }
}

/// Every 1 000 rows, and at each table's start.
const PROGRESS_EVERY: u64 = 1_000;

struct FileSink<'a, 'o> {
    out: Hashing<'o>,
    header: &'a Header,
    rows: u64,
    /// The table being written, and its rows so far.
    table: Option<(usize, u64)>,
    progress: Progress<'a>,
}

impl FileSink<'_, '_> {
    /// Checks that the table just written has the rows its header line
    /// says, so that a backup never writes a file its restore refuses.
    fn close_table(&mut self) -> Result<(), BackupError> {
        if let Some((k, rows)) = self.table.take() {
            let said = self.header.tables.get(k).map(|t| (t.name.as_str(), t.rows));
            if let Some((name, expected)) = said
                && expected != rows
            {
                return Err(BackupError::Refused(format!(
                    "table {name} gave {rows} rows where the snapshot counted {expected}"
                )));
            }
        }
        Ok(())
    }
}

impl AsyncRowSink for FileSink<'_, '_> {
    async fn table(&mut self, k: usize) -> Result<(), BackupError> {
        self.close_table()?;
        self.table = Some((k, 0));
        let name = self.header.tables.get(k).map_or("", |t| t.name.as_str());
        self.out.line(&serde_json::json!({ "table": name }))?;
        (self.progress)(name, self.rows);
        Ok(())
    }

    async fn row(&mut self, k: usize, values: Vec<Value>) -> Result<(), BackupError> {
        let row: Vec<serde_json::Value> = values.iter().map(Value::to_json).collect();
        self.out.line(&serde_json::Value::Array(row))?;
        self.rows += 1;
        if let Some((_, rows)) = self.table.as_mut() {
            *rows += 1;
        }
        if self.rows.is_multiple_of(PROGRESS_EVERY) {
            let name = self.header.tables.get(k).map_or("", |t| t.name.as_str());
            (self.progress)(name, self.rows);
        }
        Ok(())
    }
}

struct CopySink<'a, 'l> {
    loader: &'l mut Loader,
    rows: u64,
    progress: Progress<'a>,
}

impl AsyncRowSink for CopySink<'_, '_> {
    async fn table(&mut self, k: usize) -> Result<(), BackupError> {
        self.loader.start_table(k).await?;
        let name = self.loader.table_name(k).to_owned();
        (self.progress)(&name, self.rows);
        Ok(())
    }

    async fn row(&mut self, k: usize, values: Vec<Value>) -> Result<(), BackupError> {
        self.loader.push(k, values).await?;
        self.rows += 1;
        if self.rows.is_multiple_of(PROGRESS_EVERY) {
            let name = self.loader.table_name(k).to_owned();
            (self.progress)(&name, self.rows);
        }
        Ok(())
    }
}

/// A writer that hashes what goes through it.
struct Hashing<'o> {
    out: &'o mut (dyn Write + Send),
    hash: Sha256,
    line: Vec<u8>,
}

impl<'o> Hashing<'o> {
    fn new(out: &'o mut (dyn Write + Send)) -> Self {
        Self {
            out,
            hash: Sha256::new(),
            line: Vec::with_capacity(256),
        }
    }

    fn line(&mut self, value: &serde_json::Value) -> Result<(), BackupError> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, value).map_err(json_error)?;
        self.line.push(b'\n');
        self.hash.update(&self.line);
        self.out.write_all(&self.line)?;
        Ok(())
    }

    fn finish(self) -> (&'o mut (dyn Write + Send), [u8; 32]) {
        (self.out, self.hash.finalize().into())
    }
}

/// Reads every line of a backup file, hashing it, until the end line.
struct Lines<R> {
    input: R,
    hash: Sha256,
    buf: String,
    number: u64,
}

impl<R: BufRead> Lines<R> {
    /// The next line, parsed; `None` at the end line (whose digest and
    /// count are checked).
    fn next(&mut self) -> Result<serde_json::Value, BackupError> {
        self.buf.clear();
        let n = self.input.read_line(&mut self.buf)?;
        self.number += 1;
        if n == 0 || !self.buf.ends_with('\n') {
            return Err(malformed(format!(
                "the file ends at line {} without its end line: it is truncated",
                self.number
            )));
        }
        serde_json::from_str(&self.buf)
            .map_err(|e| malformed(format!("line {} is not JSON: {e}", self.number)))
    }

    fn hash_last(&mut self) {
        self.hash.update(self.buf.as_bytes());
    }
}

/// Restores a backup file into `target`, an empty database: migrated to
/// the backup's schema, every row in one transaction, then migrated to
/// this version's schema. Nothing is kept if any of it fails, nor if the
/// file is cut short or damaged (its end line's digest).
pub async fn restore(
    input: impl BufRead,
    target: &Store,
    progress: Progress<'_>,
) -> Result<Summary, BackupError> {
    let mut lines = Lines {
        input,
        hash: Sha256::new(),
        buf: String::new(),
        number: 0,
    };
    let first = lines.next()?;
    if first.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
        return Err(malformed("its first line does not say `lockbox-backup`"));
    }
    let header: Header = serde_json::from_value(first)
        .map_err(|e| malformed(format!("its first line is not a backup's header: {e}")))?;
    if header.version != FORMAT_VERSION {
        return Err(malformed(format!(
            "it is of format version {}; this Lockbox reads version {FORMAT_VERSION}",
            header.version
        )));
    }
    lines.hash_last();
    let mut loader = Loader::begin(target, &header).await?;
    let filled = fill(&mut lines, &header, &mut loader, progress).await;
    loader.complete(filled).await?;
    let schema_after = finish_restore(target).await?;
    Ok(Summary {
        header,
        schema_after,
    })
}

/// Reads the rows of every table, then the end line, into `loader`.
async fn fill<R: BufRead>(
    lines: &mut Lines<R>,
    header: &Header,
    loader: &mut Loader,
    progress: Progress<'_>,
) -> Result<(), BackupError> {
    let mut rows = 0_u64;
    for (k, table) in header.tables.iter().enumerate() {
        let marker = lines.next()?;
        if marker.get("table").and_then(|t| t.as_str()) != Some(table.name.as_str()) {
            return Err(malformed(format!(
                "line {} should begin table {}",
                lines.number, table.name
            )));
        }
        lines.hash_last();
        loader.start_table(k).await?;
        progress(&table.name, rows);
        for _ in 0..table.rows {
            let serde_json::Value::Array(values) = lines.next()? else {
                return Err(malformed(format!(
                    "line {} should be a row of {}",
                    lines.number, table.name
                )));
            };
            lines.hash_last();
            if values.len() != table.columns.len() {
                return Err(malformed(format!(
                    "line {} has {} values; {} has {} columns",
                    lines.number,
                    values.len(),
                    table.name,
                    table.columns.len()
                )));
            }
            let values = values
                .into_iter()
                .zip(&table.columns)
                .map(|(v, c)| {
                    Value::from_json(v, c.kind).ok_or_else(|| {
                        malformed(format!(
                            "line {}: {}.{} is not {}",
                            lines.number,
                            table.name,
                            c.name,
                            match c.kind {
                                Kind::Int => "an integer",
                                Kind::Text => "text",
                                Kind::Bytes => "hex bytes",
                            }
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            loader.push(k, values).await?;
            rows += 1;
            if rows.is_multiple_of(PROGRESS_EVERY) {
                progress(&table.name, rows);
            }
        }
    }
    let end = lines.next()?;
    let digest: [u8; 32] = std::mem::take(&mut lines.hash).finalize().into();
    let said = end.get("end");
    let said_rows = said.and_then(|e| e.get("rows")).and_then(|r| r.as_u64());
    let said_digest = said.and_then(|e| e.get("sha256")).and_then(|d| d.as_str());
    if said_rows != Some(rows) {
        return Err(malformed(format!(
            "line {} should be the end line, with {rows} rows",
            lines.number
        )));
    }
    if said_digest != Some(hex::encode(digest).as_str()) {
        return Err(malformed(
            "its SHA-256 is not the one its end line records: the file was changed",
        ));
    }
    let mut rest = String::new();
    if lines.input.read_line(&mut rest)? != 0 {
        return Err(malformed(format!(
            "there is more after its end line (line {})",
            lines.number
        )));
    }
    Ok(())
}

/// After a restore's commit: this version's migrations, and fresh
/// statistics on PostgreSQL.
async fn finish_restore(target: &Store) -> Result<Option<i64>, BackupError> {
    target.migrate().await?;
    if target.backend() == Backend::Postgres {
        sqlx::query("ANALYZE")
            .execute(&target.inner.writer)
            .await
            .map_err(classify)?;
    }
    Ok(target.schema_version().await?)
}

/// Rows going into an empty database, in one transaction.
struct Loader {
    /// `None` once committed.
    tx: Option<Transaction<'static, Any>>,
    tables: Vec<LoadTable>,
    /// The batch being gathered, for table `current`.
    batch: Vec<Vec<Value>>,
    current: usize,
    /// The backup's chain heads, to compare with those the trigger made.
    heads: Vec<(String, i64, Vec<u8>)>,
}

struct LoadTable {
    name: String,
    /// The columns as the backup orders them.
    columns: Vec<String>,
    batch_rows: usize,
    /// For `audit_heads`: where its `chain`, `seq` and `hash` are.
    head: Option<[usize; 3]>,
}

impl Loader {
    /// Begins the one transaction of the load, and in it checks that
    /// `target` is empty, migrates it to the backup's schema (DDL is
    /// transactional on both backends, so a load that fails leaves nothing
    /// behind, schema included) and checks that its tables are the
    /// backup's.
    async fn begin(target: &Store, header: &Header) -> Result<Self, BackupError> {
        if header.schema > SCHEMA_VERSION {
            return Err(BackupError::Refused(format!(
                "the backup is of schema version {}, newer than this Lockbox knows (version \
                 {SCHEMA_VERSION}): restore it with that version or a later one",
                header.schema
            )));
        }
        let begin = match target.backend() {
            // The write lock at once: a second load waits for this one.
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN ISOLATION LEVEL READ COMMITTED",
        };
        let mut tx = target
            .inner
            .writer
            .begin_with(begin)
            .await
            .map_err(classify)?;
        if target.backend() == Backend::Postgres {
            // A second load into this database waits here until this one
            // has committed or rolled back, then finds it not empty.
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(LOAD_LOCK)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
        }
        let existing = describe(&mut tx, target.backend()).await?;
        let migrated = match target.backend() {
            Backend::Sqlite => sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = '_sqlx_migrations'",
            ),
            Backend::Postgres => sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = current_schema() AND c.relname = '_sqlx_migrations'",
            ),
        }
        .fetch_one(&mut *tx)
        .await
        .map_err(classify)?;
        if !existing.is_empty() || migrated > 0 {
            return Err(BackupError::Refused(format!(
                "the target database is not empty (it has {}): restore into a new, empty database",
                match existing.first() {
                    Some((name, _)) => format!("{} tables, {name} among them", existing.len()),
                    None => "a migration history".to_owned(),
                }
            )));
        }
        migrations(target.backend())
            .run_to(header.schema, &mut *tx)
            .await
            .map_err(|e| StoreError::Backend(format!("migration failed: {e}")))?;
        let made = describe(&mut tx, target.backend()).await?;
        let made: BTreeMap<&str, &Described> =
            made.iter().map(|(name, t)| (name.as_str(), t)).collect();
        let wanted: BTreeSet<&str> = header.tables.iter().map(|t| t.name.as_str()).collect();
        if let Some(extra) = made.keys().find(|name| !wanted.contains(*name)) {
            return Err(BackupError::Refused(format!(
                "schema version {} has a table {extra} that the backup lacks",
                header.schema
            )));
        }
        let mut tables = Vec::with_capacity(header.tables.len());
        for table in &header.tables {
            let Some(made) = made.get(table.name.as_str()) else {
                return Err(BackupError::Refused(format!(
                    "the backup has a table {} that schema version {} lacks",
                    table.name, header.schema
                )));
            };
            let mut theirs: Vec<&Column> = table.columns.iter().collect();
            let mut ours: Vec<&Column> = made.columns.iter().collect();
            theirs.sort_by(|a, b| a.name.cmp(&b.name));
            ours.sort_by(|a, b| a.name.cmp(&b.name));
            if theirs != ours {
                return Err(BackupError::Refused(format!(
                    "the backup's table {} does not have the columns schema version {} gives it",
                    table.name, header.schema
                )));
            }
            let width = table.columns.len().max(1);
            let at = |name: &str| table.columns.iter().position(|c| c.name == name);
            let head = match (table.name.as_str(), at("chain"), at("seq"), at("hash")) {
                ("audit_heads", Some(chain), Some(seq), Some(hash)) => Some([chain, seq, hash]),
                ("audit_heads", ..) => {
                    return Err(BackupError::Refused(
                        "the backup's audit_heads lacks chain, seq or hash".into(),
                    ));
                }
                _ => None,
            };
            tables.push(LoadTable {
                name: table.name.clone(),
                columns: table.columns.iter().map(|c| quoted(&c.name)).collect(),
                batch_rows: (MAX_PARAMS / width).clamp(1, MAX_BATCH),
                head,
            });
        }
        Ok(Self {
            tx: Some(tx),
            tables,
            batch: Vec::new(),
            current: 0,
            heads: Vec::new(),
        })
    }

    /// Commits what `filled` loaded, once the chain heads check; if
    /// anything failed, the transaction rolls back (when dropped) and the
    /// target is as empty as it was.
    async fn complete(mut self, filled: Result<(), BackupError>) -> Result<(), BackupError> {
        filled?;
        self.commit().await
    }

    fn table_name(&self, k: usize) -> &str {
        self.tables.get(k).map_or("", |t| t.name.as_str())
    }

    async fn start_table(&mut self, k: usize) -> Result<(), BackupError> {
        self.flush().await?;
        self.current = k;
        Ok(())
    }

    async fn push(&mut self, k: usize, values: Vec<Value>) -> Result<(), BackupError> {
        if k != self.current {
            self.start_table(k).await?;
        }
        let head = self.tables.get(k).and_then(|t| t.head);
        let mut values = values;
        if let Some([chain, seq, hash]) = head {
            // The head as a new chain has it; the trigger advances it with
            // each event, and `finish` compares the result with this row.
            match (values.get(chain), values.get(seq), values.get(hash)) {
                (
                    Some(Value::Text(Some(c))),
                    Some(Value::Int(Some(s))),
                    Some(Value::Bytes(Some(h))),
                ) => self.heads.push((c.clone(), *s, h.clone())),
                _ => return Err(malformed("an audit_heads row is not (chain, seq, hash)")),
            }
            if let Some(v) = values.get_mut(seq) {
                *v = Value::Int(Some(0));
            }
            if let Some(v) = values.get_mut(hash) {
                *v = Value::Bytes(Some(lockbox_core::Digest::ZERO.0.to_vec()));
            }
        }
        self.batch.push(values);
        let full = self
            .tables
            .get(self.current)
            .is_some_and(|t| self.batch.len() >= t.batch_rows);
        if full {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), BackupError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let Some(table) = self.tables.get(self.current) else {
            return Err(malformed("a row of no table"));
        };
        let width = table.columns.len();
        let mut sql = format!(
            "INSERT INTO {} ({}) VALUES ",
            quoted(&table.name),
            table.columns.join(", ")
        );
        let mut n = 0;
        for r in 0..self.batch.len() {
            if r > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for c in 0..width {
                n += 1;
                if c > 0 {
                    sql.push_str(", ");
                }
                sql.push('$');
                sql.push_str(&n.to_string());
            }
            sql.push(')');
        }
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for row in std::mem::take(&mut self.batch) {
            for value in row {
                q = value.bind(q);
            }
        }
        let Some(tx) = self.tx.as_mut() else {
            return Err(malformed("rows after the end"));
        };
        q.execute(&mut **tx).await.map_err(|e| {
            BackupError::Refused(format!(
                "the target refused rows of {}: {}",
                table.name,
                classify(e)
            ))
        })?;
        Ok(())
    }

    /// Writes what is left, checks the chain heads, and commits.
    async fn commit(&mut self) -> Result<(), BackupError> {
        self.flush().await?;
        let Some(tx) = self.tx.as_mut() else {
            return Err(malformed("rows after the end"));
        };
        let made: Vec<(String, i64, Vec<u8>)> =
            sqlx::query_as("SELECT chain, seq, hash FROM audit_heads ORDER BY chain")
                .fetch_all(&mut **tx)
                .await
                .map_err(classify)?;
        let made: BTreeMap<String, (i64, Vec<u8>)> =
            made.into_iter().map(|(c, s, h)| (c, (s, h))).collect();
        for (chain, seq, hash) in &self.heads {
            if made.get(chain) != Some(&(*seq, hash.clone())) {
                return Err(BackupError::Refused(format!(
                    "the audit chain {chain} does not reach its recorded head (event {seq}): \
                     the backup's events do not continue it"
                )));
            }
        }
        if let Some(tx) = self.tx.take() {
            tx.commit().await.map_err(classify)?;
        }
        Ok(())
    }
}
