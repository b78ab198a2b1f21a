-- Signing keys are stored sealed by the server's key-encryption key (KEK,
-- `[keys] kek_file`). From now on `secret` holds the AEAD's nonce,
-- ciphertext and tag, and `kek_id` names the KEK that sealed it. A row
-- with no `kek_id` was written before this migration and holds the
-- 32-byte secret in clear until the first start with a KEK seals it in
-- place (Rust code at start-up, not this file: SQL has no KEK). Keep in
-- step with the other backend's file.

ALTER TABLE signing_keys ADD COLUMN kek_id TEXT;
