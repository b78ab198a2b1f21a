-- Accounts (issue 11 of the security round): enrolment links instead of
-- credentials set by someone else, disabled principals, and tokens that
-- remember the token they were minted with. Keep in step with the other
-- backend's file.

ALTER TABLE principals ADD COLUMN enrolled_at_us INTEGER;
ALTER TABLE principals ADD COLUMN disabled_at_us INTEGER;

-- Principals that already hold a credential took it up before enrolment
-- links existed: count them as enrolled, so that nobody (the provider in
-- particular) may reissue a link for a tenant admin already in use.
UPDATE principals SET enrolled_at_us = created_at_us
WHERE id IN (SELECT principal_id FROM passwords)
   OR id IN (SELECT principal_id FROM api_tokens);

-- parent_id: the token used to mint this one (revoking a token revokes
-- everything minted from it); kind: 'api' or 'session'; name: the owner's
-- label; last_used_at_us: updated at most every few seconds.
ALTER TABLE api_tokens ADD COLUMN parent_id TEXT;
ALTER TABLE api_tokens ADD COLUMN kind TEXT NOT NULL DEFAULT 'api' CHECK (kind IN ('api', 'session'));
ALTER TABLE api_tokens ADD COLUMN name TEXT;
ALTER TABLE api_tokens ADD COLUMN last_used_at_us INTEGER;
CREATE INDEX api_tokens_by_parent ON api_tokens (parent_id);

CREATE TABLE enrollments (
    id            TEXT NOT NULL,
    principal_id  TEXT NOT NULL REFERENCES principals (id),
    token_hash    BLOB NOT NULL,
    issued_by     TEXT NOT NULL,
    created_at_us INTEGER NOT NULL,
    expires_at_us INTEGER NOT NULL,
    used_at_us    INTEGER,
    replaced_at_us INTEGER,
    CONSTRAINT enrollments_pk PRIMARY KEY (id),
    CONSTRAINT enrollments_hash_unique UNIQUE (token_hash)
);
CREATE INDEX enrollments_by_principal ON enrollments (principal_id);
