-- The sign-in form's memory, shared by every node (issue 16 item 5): failed
-- attempts counted per key (an account, for browsers it does not know; a
-- device cookie, for the browser holding it), and the secrets the server
-- keeps for itself (the key of device cookies), each made once by whichever
-- node needs it first. Keep in step with the other backend's file.

CREATE TABLE sign_in_failures (
    key             TEXT NOT NULL,
    failures        BIGINT NOT NULL CHECK (failures >= 0),
    window_start_us BIGINT NOT NULL,
    locked_until_us BIGINT,
    CONSTRAINT sign_in_failures_pk PRIMARY KEY (key)
);
CREATE INDEX sign_in_failures_by_start ON sign_in_failures (window_start_us);

CREATE TABLE server_secrets (
    name          TEXT NOT NULL,
    secret        BYTEA NOT NULL,
    created_at_us BIGINT NOT NULL,
    CONSTRAINT server_secrets_pk PRIMARY KEY (name)
);
