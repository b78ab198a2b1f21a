-- The policy's limits count what is open, not what ever was: a case's and
-- an operator's pending requests and a holder's active grants in a tenant,
-- each found without reading the rest of their history (a case or an
-- operator with tens of thousands of requests behind it made every new
-- request read them all).
CREATE INDEX requests_pending_by_case ON requests (case_id, expires_at_us) WHERE status = 'pending';
CREATE INDEX requests_pending_by_requester ON requests (requester, tenant_id, expires_at_us) WHERE status = 'pending';
CREATE INDEX grants_active_by_holder_in_tenant ON grants (principal_id, tenant_id, not_after_us) WHERE state = 'active';
