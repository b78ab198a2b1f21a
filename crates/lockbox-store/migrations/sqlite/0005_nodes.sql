-- The nodes enforcing checks on this database, so that a change that
-- narrows access waits until every live node has applied it (see
-- docs/ENFORCEMENT.md). SQLite has one node, which never writes here: the
-- table keeps the schemas in step. Keep in step with the other backend's
-- file.

CREATE TABLE nodes (
    id               TEXT NOT NULL,
    started_at_us    INTEGER NOT NULL,
    seen_at_us       INTEGER NOT NULL,
    max_staleness_ms INTEGER NOT NULL,
    CONSTRAINT nodes_pk PRIMARY KEY (id)
);
