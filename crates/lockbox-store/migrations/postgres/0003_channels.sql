-- A tenant's notification channels. The webhook secret is kept (it keys
-- the signatures) but never returned by the API. Keep in step with the
-- other backend's file.

CREATE TABLE channels (
    id            TEXT NOT NULL,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    kind          TEXT NOT NULL CHECK (kind IN ('webhook', 'email')),
    url           TEXT,
    secret        TEXT,
    format        TEXT CHECK (format IN ('json', 'slack')),
    address       TEXT,
    created_at_us BIGINT NOT NULL,
    created_by    TEXT NOT NULL,
    CONSTRAINT channels_pk PRIMARY KEY (id),
    CONSTRAINT channels_target CHECK (
        (kind = 'webhook' AND url IS NOT NULL AND secret IS NOT NULL AND format IS NOT NULL
            AND address IS NULL)
        OR (kind = 'email' AND address IS NOT NULL AND url IS NULL AND secret IS NULL
            AND format IS NULL))
);
CREATE INDEX channels_by_tenant ON channels (tenant_id, id);
