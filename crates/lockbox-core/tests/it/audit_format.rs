//! Placeholder: docs/AUDIT_FORMAT.md test vectors (being written).
