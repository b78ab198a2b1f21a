//! The canonical JSON encoding that audit hashes and checkpoint signatures
//! are computed over.
//!
//! It is RFC 8785 (JSON Canonicalization Scheme) restricted to the JSON that
//! Lockbox writes: object members sorted by the UTF-16 code units of their
//! names, no whitespace, strings escaped minimally (`"`, `\`, and control
//! characters; `\b \t \n \f \r` in short form, others as `\u00xx` with
//! lowercase hex), and numbers limited to integers of magnitude at most
//! 2^53 − 1, written in plain decimal. A fraction, an exponent or a larger
//! integer is refused rather than rounded, so any JCS implementation
//! reproduces these bytes exactly. `docs/AUDIT_FORMAT.md` is the contract.

use std::cmp::Ordering;
use std::io::Write as _;

use serde_json::{Map, Value};

/// The largest integer magnitude that survives every JSON implementation
/// unchanged (I-JSON, RFC 7493).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// A value that has no canonical encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not canonically encodable: {0}")]
pub struct NotCanonical(pub String);

/// Appends the canonical encoding of `value` to `out`.
pub fn write_value(out: &mut Vec<u8>, value: &Value) -> Result<(), NotCanonical> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                write_uint(out, u)?;
            } else if let Some(i) = n.as_i64() {
                if i.unsigned_abs() > MAX_SAFE_INTEGER {
                    return Err(NotCanonical(format!("integer {i} is outside ±(2^53 − 1)")));
                }
                // Infallible: writing to a Vec.
                let _ = write!(out, "{i}");
            } else {
                return Err(NotCanonical(format!(
                    "number {n} is not an integer; audit data holds integers only"
                )));
            }
        }
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item)?;
            }
            out.push(b']');
        }
        Value::Object(map) => write_object(out, map)?,
    }
    Ok(())
}

/// Appends an unsigned integer, refusing values beyond 2^53 − 1.
pub fn write_uint(out: &mut Vec<u8>, u: u64) -> Result<(), NotCanonical> {
    if u > MAX_SAFE_INTEGER {
        return Err(NotCanonical(format!("integer {u} is larger than 2^53 − 1")));
    }
    let _ = write!(out, "{u}");
    Ok(())
}

/// Appends the canonical encoding of an object.
pub fn write_object(out: &mut Vec<u8>, map: &Map<String, Value>) -> Result<(), NotCanonical> {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    // serde_json's map may keep insertion order (feature `preserve_order`),
    // so sort explicitly rather than trust the iteration order.
    entries.sort_unstable_by(|a, b| utf16_cmp(a.0, b.0));
    out.push(b'{');
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, key);
        out.push(b':');
        write_value(out, value)?;
    }
    out.push(b'}');
    Ok(())
}

/// Serializes an object with its members in byte order of their names, at
/// every depth, whatever order the map keeps (serde_json keeps insertion
/// order when any crate in the build enables its `preserve_order`), so an
/// exported event is always spelled the same way.
pub(crate) fn serialize_sorted<S: serde::Serializer>(
    map: &Map<String, Value>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&Sorted::Object(map), serializer)
}

enum Sorted<'a> {
    Object(&'a Map<String, Value>),
    Value(&'a Value),
}

impl serde::Serialize for Sorted<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap as _, SerializeSeq as _};
        match self {
            Self::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                let mut out = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    out.serialize_entry(key, &Sorted::Value(value))?;
                }
                out.end()
            }
            Self::Value(Value::Object(map)) => Sorted::Object(map).serialize(serializer),
            Self::Value(Value::Array(items)) => {
                let mut out = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    out.serialize_element(&Sorted::Value(item))?;
                }
                out.end()
            }
            Self::Value(other) => other.serialize(serializer),
        }
    }
}

/// Orders strings by UTF-16 code units, as RFC 8785 requires. For ASCII this
/// is byte order.
pub(crate) fn utf16_cmp(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        a.as_bytes().cmp(b.as_bytes())
    } else {
        a.encode_utf16().cmp(b.encode_utf16())
    }
}

/// Appends a JSON string with RFC 8785's minimal escaping.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            0x0c => b"\\f",
            b'\r' => b"\\r",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(bytes.get(start..i).unwrap_or_default());
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn enc(v: &Value) -> String {
        let mut out = Vec::new();
        write_value(&mut out, v).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn objects_are_sorted_and_compact() {
        assert_eq!(
            enc(&json!({"b": 1, "a": [true, null, "x"], "c": {"z": -5, "y": {}}})),
            r#"{"a":[true,null,"x"],"b":1,"c":{"y":{},"z":-5}}"#
        );
    }

    #[test]
    fn strings_are_escaped_minimally() {
        assert_eq!(
            enc(&json!(
                "quote\" back\\ nl\n tab\t bell\u{7} del\u{7f} é € 😀 /"
            )),
            "\"quote\\\" back\\\\ nl\\n tab\\t bell\\u0007 del\u{7f} é € 😀 /\""
        );
        assert_eq!(enc(&json!("\u{8}\u{c}\r\u{1f}")), r#""\b\f\r\u001f""#);
    }

    #[test]
    fn keys_sort_by_utf16_code_units() {
        // U+FF61 sorts after U+1F600 by code point but before it in UTF-16
        // (the emoji is the surrogate pair D83D DE00).
        let v = json!({"\u{ff61}": 1, "\u{1f600}": 2, "a": 3});
        assert_eq!(enc(&v), "{\"a\":3,\"\u{1f600}\":2,\"\u{ff61}\":1}");
    }

    #[test]
    fn only_safe_integers_are_encodable() {
        assert_eq!(enc(&json!(9_007_199_254_740_991_u64)), "9007199254740991");
        assert_eq!(enc(&json!(-9_007_199_254_740_991_i64)), "-9007199254740991");
        let mut out = Vec::new();
        assert!(write_value(&mut out, &json!(9_007_199_254_740_992_u64)).is_err());
        assert!(write_value(&mut out, &json!(-9_007_199_254_740_992_i64)).is_err());
        assert!(write_value(&mut out, &json!(1.5)).is_err());
        assert!(write_value(&mut out, &json!({"a": [1.0]})).is_err());
    }
}
