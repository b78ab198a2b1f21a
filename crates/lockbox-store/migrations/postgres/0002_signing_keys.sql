-- Signing keys (access tokens now; audit checkpoints later), and an index
-- for loading the grants the enforcement index holds (every grant not long
-- over, whatever its state). Keep in step with the other backend's file.

CREATE TABLE signing_keys (
    id            TEXT NOT NULL,
    purpose       TEXT NOT NULL CHECK (purpose IN ('access_token', 'checkpoint')),
    algorithm     TEXT NOT NULL CHECK (algorithm = 'EdDSA'),
    secret        BYTEA NOT NULL,
    public_key    BYTEA NOT NULL,
    created_at_us BIGINT NOT NULL,
    retired_at_us BIGINT,
    CONSTRAINT signing_keys_pk PRIMARY KEY (id)
);
CREATE INDEX signing_keys_by_purpose ON signing_keys (purpose, created_at_us);

CREATE INDEX grants_by_end ON grants (not_after_us);
