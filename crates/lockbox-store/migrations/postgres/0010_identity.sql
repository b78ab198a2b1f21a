-- Single sign-on (issue 20): each tenant's OpenID Provider (its client
-- secret sealed by the KEK, as signing keys are), the IdP subject each
-- person is linked to (issuer + subject, unique), the sign-ins under way
-- (keyed by the SHA-256 of their `state`, taken once), and, on tokens,
-- when the IdP last authenticated the person a token comes from (null for
-- tokens that come from a password). Keep in step with the other
-- backend's file.

CREATE TABLE identity_providers (
    tenant_id                 TEXT NOT NULL REFERENCES tenants (id),
    issuer                    TEXT NOT NULL,
    client_id                 TEXT NOT NULL,
    secret                    BYTEA NOT NULL,
    kek_id                    TEXT NOT NULL,
    principal_claim           TEXT NOT NULL,
    allowed_email_domains     TEXT NOT NULL,
    create_on_first_sign_in   BIGINT NOT NULL,
    sso_only                  BIGINT NOT NULL,
    decision_max_age_minutes  BIGINT NOT NULL,
    require_decision_evidence BIGINT NOT NULL,
    updated_at_us             BIGINT NOT NULL,
    CONSTRAINT identity_providers_pk PRIMARY KEY (tenant_id)
);

CREATE TABLE identity_links (
    principal_id  TEXT NOT NULL REFERENCES principals (id),
    issuer        TEXT NOT NULL,
    subject       TEXT NOT NULL,
    claim         TEXT NOT NULL,
    linked_at_us  BIGINT NOT NULL,
    CONSTRAINT identity_links_pk PRIMARY KEY (principal_id),
    CONSTRAINT identity_links_subject_unique UNIQUE (issuer, subject)
);

CREATE TABLE sign_in_flows (
    state_hash    TEXT NOT NULL,
    flow          TEXT NOT NULL,
    expires_at_us BIGINT NOT NULL,
    CONSTRAINT sign_in_flows_pk PRIMARY KEY (state_hash)
);
CREATE INDEX sign_in_flows_by_expiry ON sign_in_flows (expires_at_us);

ALTER TABLE api_tokens ADD COLUMN sso_auth_time_us BIGINT;
