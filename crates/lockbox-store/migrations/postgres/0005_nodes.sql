-- The nodes enforcing checks on this database, so that a change that
-- narrows access waits until every live node has applied it (see
-- docs/ENFORCEMENT.md). Bookkeeping, not audited: each node's heartbeat
-- keeps its row, stamped by the database's clock (microseconds); a node
-- that stops deletes its row, or leaves it to age. Keep in step with the
-- other backend's file.

CREATE TABLE nodes (
    id               TEXT NOT NULL,
    started_at_us    BIGINT NOT NULL,
    seen_at_us       BIGINT NOT NULL,
    max_staleness_ms BIGINT NOT NULL,
    CONSTRAINT nodes_pk PRIMARY KEY (id)
);
