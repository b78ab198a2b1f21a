//! Between rows and domain values. Times are stored as microseconds since
//! the Unix epoch, flags as 0/1, lists as JSON text: the same on both
//! backends, so one codec serves both.

use std::str::FromStr;

use lockbox_core::Timestamp;
use serde::de::DeserializeOwned;
use sqlx::Row as _;
use sqlx::any::AnyRow;

use crate::error::{StoreError, classify};

/// The stored form of a time.
pub(crate) fn micros(t: Timestamp) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn opt_micros(t: Option<Timestamp>) -> Option<i64> {
    t.map(micros)
}

pub(crate) fn time(us: i64) -> Result<Timestamp, StoreError> {
    chrono::DateTime::from_timestamp_micros(us)
        .ok_or_else(|| StoreError::corrupt(format!("time {us} is out of range")))
}

pub(crate) fn flag(b: bool) -> i64 {
    i64::from(b)
}

pub(crate) fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Backend(format!("cannot encode JSON: {e}")))
}

/// Parses the text of column `col` with `FromStr`.
pub(crate) fn parse_text<T>(col: &str, text: &str) -> Result<T, StoreError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|e| StoreError::corrupt(format!("{col} `{text}`: {e}")))
}

/// Typed getters for a row, turning every decoding problem into a
/// [`StoreError`].
pub(crate) trait RowExt {
    fn text(&self, col: &str) -> Result<String, StoreError>;
    fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError>;
    fn int(&self, col: &str) -> Result<i64, StoreError>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError>;
    fn bytes(&self, col: &str) -> Result<Vec<u8>, StoreError>;

    fn flag(&self, col: &str) -> Result<bool, StoreError> {
        Ok(self.int(col)? != 0)
    }

    fn time(&self, col: &str) -> Result<Timestamp, StoreError> {
        time(self.int(col)?)
    }

    fn opt_time(&self, col: &str) -> Result<Option<Timestamp>, StoreError> {
        self.opt_int(col)?.map(time).transpose()
    }

    fn u32(&self, col: &str) -> Result<u32, StoreError> {
        let n = self.int(col)?;
        u32::try_from(n).map_err(|_| StoreError::corrupt(format!("{col} = {n} is out of range")))
    }

    fn u64(&self, col: &str) -> Result<u64, StoreError> {
        let n = self.int(col)?;
        u64::try_from(n).map_err(|_| StoreError::corrupt(format!("{col} = {n} is negative")))
    }

    /// Parses a column with `FromStr`.
    fn parsed<T>(&self, col: &str) -> Result<T, StoreError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        parse_text(col, &self.text(col)?)
    }

    fn opt_parsed<T>(&self, col: &str) -> Result<Option<T>, StoreError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        self.opt_text(col)?
            .map(|text| parse_text(col, &text))
            .transpose()
    }

    /// Decodes a JSON column.
    fn json<T: DeserializeOwned>(&self, col: &str) -> Result<T, StoreError> {
        let text = self.text(col)?;
        serde_json::from_str(&text).map_err(|e| StoreError::corrupt(format!("{col}: {e}")))
    }

    /// Decodes a JSON column that may be NULL.
    fn opt_json<T: DeserializeOwned>(&self, col: &str) -> Result<Option<T>, StoreError> {
        self.opt_text(col)?
            .map(|text| {
                serde_json::from_str(&text).map_err(|e| StoreError::corrupt(format!("{col}: {e}")))
            })
            .transpose()
    }
}

impl RowExt for AnyRow {
    fn text(&self, col: &str) -> Result<String, StoreError> {
        self.try_get(col).map_err(classify)
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError> {
        self.try_get(col).map_err(classify)
    }
    fn int(&self, col: &str) -> Result<i64, StoreError> {
        self.try_get(col).map_err(classify)
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError> {
        self.try_get(col).map_err(classify)
    }
    fn bytes(&self, col: &str) -> Result<Vec<u8>, StoreError> {
        self.try_get(col).map_err(classify)
    }
}

/// `$first, $first+1, …` for `count` values: the placeholders of a list.
pub(crate) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}
