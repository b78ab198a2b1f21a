-- SSH access (issue 18): an access level's `ssh` section (the Unix login
-- and what it may do, JSON), snapshotted into each request made at that
-- level, and the addresses a request says its SSH logins come from (JSON); each tenant's SSH user certificate authorities (Ed25519, the
-- secret sealed by the KEK as signing keys are); the certificates minted
-- for grants, by serial (unique per tenant, counted in
-- ssh_serials). Keep in step with the other backend's file.

ALTER TABLE access_levels ADD COLUMN ssh TEXT;
ALTER TABLE requests ADD COLUMN ssh TEXT;
ALTER TABLE requests ADD COLUMN source_addresses TEXT;

CREATE TABLE ssh_authorities (
    id            TEXT NOT NULL,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    secret        BYTEA NOT NULL,
    kek_id        TEXT NOT NULL,
    public_key    BYTEA NOT NULL,
    created_at_us BIGINT NOT NULL,
    retired_at_us BIGINT,
    CONSTRAINT ssh_authorities_pk PRIMARY KEY (id)
);
CREATE INDEX ssh_authorities_by_tenant ON ssh_authorities (tenant_id, created_at_us);

CREATE TABLE ssh_serials (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    last      BIGINT NOT NULL CHECK (last > 0),
    CONSTRAINT ssh_serials_pk PRIMARY KEY (tenant_id)
);

CREATE TABLE ssh_certificates (
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    serial          BIGINT NOT NULL CHECK (serial > 0),
    authority       TEXT NOT NULL REFERENCES ssh_authorities (id),
    grant_id        TEXT NOT NULL REFERENCES grants (id),
    principal_id    TEXT NOT NULL REFERENCES principals (id),
    key_id          TEXT NOT NULL,
    key_fingerprint TEXT NOT NULL,
    digest          TEXT NOT NULL,
    principals      TEXT NOT NULL,
    login           TEXT NOT NULL,
    valid_after_us  BIGINT NOT NULL,
    valid_before_us BIGINT NOT NULL,
    issued_at_us    BIGINT NOT NULL,
    CONSTRAINT ssh_certificates_pk PRIMARY KEY (tenant_id, serial),
    CONSTRAINT ssh_certificates_digest_unique UNIQUE (digest)
);
CREATE INDEX ssh_certificates_by_expiry ON ssh_certificates (tenant_id, valid_before_us);
CREATE INDEX ssh_certificates_by_grant ON ssh_certificates (grant_id);
