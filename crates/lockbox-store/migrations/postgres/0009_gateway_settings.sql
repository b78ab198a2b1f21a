-- HTTP and Kubernetes gateways (issue 19): what a gateway is trusted
-- with, fixed at registration: the one tenant it may ask about (none: any),
-- the resource it fronts by default (a Kubernetes cluster), the cookie that
-- may carry an operator's access token, and the header it may name an
-- already-authenticated person in. Keep in step with the other backend's
-- file.

CREATE TABLE gateway_settings (
    gateway_id       TEXT NOT NULL REFERENCES principals (id),
    tenant_id        TEXT REFERENCES tenants (id),
    resource         TEXT,
    token_cookie     TEXT,
    principal_header TEXT,
    CONSTRAINT gateway_settings_pk PRIMARY KEY (gateway_id)
);
