-- The request whose grant a request asks to extend (NULL: it is not an
-- extension), and the extensions still waiting for a decision found by
-- the request they extend (at most one waits per grant).
ALTER TABLE requests ADD COLUMN extends TEXT REFERENCES requests (id);
CREATE INDEX requests_pending_extensions ON requests (extends) WHERE status = 'pending' AND extends IS NOT NULL;
-- The approver groups each of which must give one of a request's
-- approvals (a JSON array of names; NULL: none), and the groups an
-- approval may count for (NULL: none).
ALTER TABLE requests ADD COLUMN required_groups TEXT;
ALTER TABLE approvals ADD COLUMN groups TEXT;
