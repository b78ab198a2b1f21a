-- Lockbox schema, PostgreSQL. Times are microseconds since the Unix epoch
-- (UTC), booleans 0/1, lists and policies JSON text, exactly as in SQLite, so
-- one codec serves both. Keep in step with ../sqlite/0001_initial.sql: the
-- conformance suite runs against both.

CREATE TABLE tenants (
    id                    TEXT NOT NULL,
    display_name          TEXT NOT NULL,
    created_at_us         BIGINT NOT NULL,
    lockbox_enabled       BIGINT NOT NULL DEFAULT 0,
    lockbox_changed_at_us BIGINT,
    lockbox_changed_by    TEXT,
    policy                TEXT NOT NULL,
    CONSTRAINT tenants_pk PRIMARY KEY (id)
);

CREATE TABLE subscriptions (
    id            TEXT NOT NULL,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    created_at_us BIGINT NOT NULL,
    CONSTRAINT subscriptions_pk PRIMARY KEY (id)
);
CREATE INDEX subscriptions_by_tenant ON subscriptions (tenant_id);

CREATE TABLE principals (
    id               TEXT NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('user', 'operator', 'gateway', 'admin')),
    tenant_id        TEXT REFERENCES tenants (id),
    emergency        BIGINT NOT NULL DEFAULT 0,
    display_name     TEXT NOT NULL,
    email            TEXT,
    alternate_emails TEXT NOT NULL DEFAULT '[]',
    created_at_us    BIGINT NOT NULL,
    CONSTRAINT principals_pk PRIMARY KEY (id),
    CHECK ((kind = 'user') = (tenant_id IS NOT NULL))
);
CREATE INDEX principals_by_tenant ON principals (tenant_id, id);

CREATE TABLE passwords (
    principal_id  TEXT NOT NULL REFERENCES principals (id),
    hash          TEXT NOT NULL,
    updated_at_us BIGINT NOT NULL,
    CONSTRAINT passwords_pk PRIMARY KEY (principal_id)
);

CREATE TABLE api_tokens (
    id            TEXT NOT NULL,
    principal_id  TEXT NOT NULL REFERENCES principals (id),
    token_hash    BYTEA NOT NULL,
    created_at_us BIGINT NOT NULL,
    expires_at_us BIGINT,
    revoked_at_us BIGINT,
    CONSTRAINT api_tokens_pk PRIMARY KEY (id),
    CONSTRAINT api_tokens_hash_unique UNIQUE (token_hash)
);
CREATE INDEX api_tokens_by_principal ON api_tokens (principal_id);

CREATE TABLE role_assignments (
    id            TEXT NOT NULL,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    principal_id  TEXT NOT NULL REFERENCES principals (id),
    role          TEXT NOT NULL,
    scope         TEXT NOT NULL,
    scope_key     TEXT NOT NULL,
    created_at_us BIGINT NOT NULL,
    created_by    TEXT NOT NULL,
    CONSTRAINT role_assignments_pk PRIMARY KEY (id),
    CONSTRAINT role_assignments_unique UNIQUE (tenant_id, principal_id, role, scope_key)
);
CREATE INDEX role_assignments_by_principal ON role_assignments (principal_id);

CREATE TABLE access_levels (
    name          TEXT NOT NULL,
    actions       TEXT NOT NULL,
    description   TEXT NOT NULL,
    updated_at_us BIGINT NOT NULL,
    CONSTRAINT access_levels_pk PRIMARY KEY (name)
);

CREATE TABLE cases (
    id            TEXT NOT NULL,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    resource      TEXT NOT NULL,
    title         TEXT NOT NULL,
    severity      TEXT NOT NULL,
    status        TEXT NOT NULL,
    assigned_to   TEXT REFERENCES principals (id),
    created_at_us BIGINT NOT NULL,
    created_by    TEXT NOT NULL,
    closed_at_us  BIGINT,
    closed_by     TEXT,
    CONSTRAINT cases_pk PRIMARY KEY (id)
);
CREATE INDEX cases_by_tenant ON cases (tenant_id, id);
CREATE INDEX cases_by_assignee ON cases (assigned_to, id);

CREATE TABLE requests (
    id                 TEXT NOT NULL,
    tenant_id          TEXT NOT NULL REFERENCES tenants (id),
    case_id            TEXT NOT NULL REFERENCES cases (id),
    requester          TEXT NOT NULL REFERENCES principals (id),
    resource           TEXT NOT NULL,
    access_level       TEXT NOT NULL,
    actions            TEXT NOT NULL,
    duration_hours     BIGINT NOT NULL,
    justification      TEXT NOT NULL,
    status             TEXT NOT NULL,
    created_at_us      BIGINT NOT NULL,
    expires_at_us      BIGINT NOT NULL,
    required_approvals BIGINT NOT NULL,
    decided_by_system  BIGINT NOT NULL,
    denied_by          TEXT,
    denial_reason      TEXT,
    denied_at_us       BIGINT,
    canceled_by        TEXT,
    cancel_reason      TEXT,
    canceled_at_us     BIGINT,
    CONSTRAINT requests_pk PRIMARY KEY (id)
);
CREATE INDEX requests_by_tenant ON requests (tenant_id, id);
CREATE INDEX requests_by_tenant_status ON requests (tenant_id, status, id);
CREATE INDEX requests_by_requester ON requests (requester, id);
CREATE INDEX requests_by_case ON requests (case_id);
CREATE INDEX requests_pending_by_expiry ON requests (expires_at_us) WHERE status = 'pending';

CREATE TABLE approvals (
    request_id     TEXT NOT NULL REFERENCES requests (id),
    approver       TEXT NOT NULL,
    position       BIGINT NOT NULL,
    reason         TEXT NOT NULL,
    at_us          BIGINT NOT NULL,
    duration_hours BIGINT,
    CONSTRAINT approvals_unique PRIMARY KEY (request_id, approver)
);

CREATE TABLE grants (
    id            TEXT NOT NULL,
    request_id    TEXT REFERENCES requests (id),
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    principal_id  TEXT NOT NULL REFERENCES principals (id),
    scope         TEXT NOT NULL,
    access_level  TEXT NOT NULL,
    actions       TEXT NOT NULL,
    not_before_us BIGINT NOT NULL,
    not_after_us  BIGINT NOT NULL,
    state         TEXT NOT NULL,
    revoked_by    TEXT,
    revoke_reason TEXT,
    revoked_at_us BIGINT,
    ended_at_us   BIGINT,
    emergency     BIGINT NOT NULL,
    CONSTRAINT grants_pk PRIMARY KEY (id),
    CONSTRAINT grants_request_unique UNIQUE (request_id)
);
CREATE INDEX grants_by_tenant ON grants (tenant_id, id);
CREATE INDEX grants_by_principal ON grants (principal_id, id);
CREATE INDEX grants_active_by_end ON grants (not_after_us) WHERE state = 'active';
CREATE INDEX grants_active_by_principal ON grants (principal_id, not_after_us) WHERE state = 'active';

CREATE TABLE audit_heads (
    chain TEXT NOT NULL,
    seq   BIGINT NOT NULL,
    hash  BYTEA NOT NULL,
    CONSTRAINT audit_heads_pk PRIMARY KEY (chain)
);

CREATE TABLE audit_events (
    chain     TEXT NOT NULL,
    seq       BIGINT NOT NULL,
    at_us     BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    kind      TEXT NOT NULL,
    subject   TEXT NOT NULL,
    data      TEXT NOT NULL,
    prev_hash BYTEA NOT NULL,
    hash      BYTEA NOT NULL,
    CONSTRAINT audit_events_pk PRIMARY KEY (chain, seq)
);
CREATE INDEX audit_events_by_kind ON audit_events (chain, kind, seq);
CREATE INDEX audit_events_by_time ON audit_events (chain, at_us);

-- The database itself refuses an event that does not continue its chain
-- (wrong sequence number or previous hash), and advances the head with each
-- insert: the head can never disagree with the last event.
CREATE FUNCTION audit_events_continue_chain() RETURNS trigger AS $$
BEGIN
    UPDATE audit_heads SET seq = NEW.seq, hash = NEW.hash
    WHERE chain = NEW.chain AND seq = NEW.seq - 1 AND hash = NEW.prev_hash;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'audit chain does not continue' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_events_continue_chain BEFORE INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_continue_chain();

CREATE FUNCTION audit_events_are_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only' USING ERRCODE = 'check_violation';
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_events_are_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_are_append_only();

CREATE TRIGGER audit_events_are_never_truncated BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_are_append_only();

CREATE TABLE audit_checkpoints (
    chain     TEXT NOT NULL,
    seq       BIGINT NOT NULL,
    head_hash BYTEA NOT NULL,
    at_us     BIGINT NOT NULL,
    key_id    TEXT NOT NULL,
    signature BYTEA NOT NULL,
    CONSTRAINT audit_checkpoints_pk PRIMARY KEY (chain, seq, key_id)
);

CREATE TABLE outbox (
    id              TEXT NOT NULL,
    topic           TEXT NOT NULL,
    tenant_id       TEXT,
    payload         TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending',
    attempts        BIGINT NOT NULL DEFAULT 0,
    created_at_us   BIGINT NOT NULL,
    available_at_us BIGINT NOT NULL,
    locked_until_us BIGINT,
    last_error      TEXT,
    finished_at_us  BIGINT,
    CONSTRAINT outbox_pk PRIMARY KEY (id)
);
CREATE INDEX outbox_ready ON outbox (topic, available_at_us) WHERE state = 'pending';
CREATE INDEX outbox_by_tenant ON outbox (tenant_id, id);

CREATE TABLE idempotency_keys (
    principal_id  TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  BYTEA NOT NULL,
    status        BIGINT NOT NULL,
    response      TEXT NOT NULL,
    created_at_us BIGINT NOT NULL,
    CONSTRAINT idempotency_keys_pk PRIMARY KEY (principal_id, key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at_us);
