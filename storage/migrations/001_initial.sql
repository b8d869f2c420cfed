-- Operations: one row per accepted command. A partial UNIQUE index lets only one op hold a
-- subject at a time; queued ops wait outside it.
CREATE TABLE operations (
    op_id             INTEGER PRIMARY KEY AUTOINCREMENT,
    kind              TEXT NOT NULL,
    subject           TEXT NOT NULL,
    params            TEXT NOT NULL DEFAULT '{}',
    actor             TEXT,
    room_id           TEXT,
    source_event_id   TEXT UNIQUE,
    state             TEXT NOT NULL CHECK (state IN
                        ('queued','running','failed','compensating','succeeded','compensated','cancelled')),
    error             TEXT,
    failed_step       TEXT,
    progress_event_id TEXT,
    created_at        REAL NOT NULL,
    updated_at        REAL NOT NULL,
    finished_at       REAL
);
CREATE UNIQUE INDEX operations_one_holder ON operations(subject)
    WHERE state IN ('running', 'failed', 'compensating');
CREATE INDEX operations_state ON operations(state);

CREATE TABLE steps (
    op_id        INTEGER NOT NULL REFERENCES operations(op_id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    position     INTEGER NOT NULL,
    status       TEXT NOT NULL CHECK (status IN
                   ('pending','running','done','failed','skipped','compensated')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    calls        INTEGER NOT NULL DEFAULT 0,
    adopted      INTEGER NOT NULL DEFAULT 0,
    started_at   REAL,
    finished_at  REAL,
    duration_ms  REAL,
    external_ms  REAL NOT NULL DEFAULT 0,
    error        TEXT,
    output       TEXT,
    PRIMARY KEY (op_id, name)
);

-- The resource ledger: every external object we create or adopt, by deterministic name.
CREATE TABLE resources (
    resource_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          TEXT NOT NULL,
    external_name TEXT NOT NULL,
    external_id   TEXT,
    owner         TEXT NOT NULL,
    op_id         INTEGER,
    step          TEXT,
    state         TEXT NOT NULL CHECK (state IN
                    ('intended','created','adopted','deleting','deleted','orphaned')),
    spec_hash     TEXT,
    attrs         TEXT NOT NULL DEFAULT '{}',
    last_error    TEXT,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL,
    deleted_at    REAL,
    UNIQUE (kind, external_name)
);
CREATE INDEX resources_owner ON resources(owner);

CREATE TABLE secrets (
    owner      TEXT NOT NULL,
    name       TEXT NOT NULL,
    value      TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (owner, name)
);

CREATE TABLE workers (
    name            TEXT PRIMARY KEY,
    team            TEXT,
    role            TEXT NOT NULL DEFAULT 'worker',
    backend         TEXT NOT NULL,
    image           TEXT,
    model           TEXT,
    spec            TEXT NOT NULL DEFAULT '{}',
    spec_hash       TEXT,
    state           TEXT NOT NULL,
    previous_state  TEXT,
    desired_state   TEXT NOT NULL,
    observed_state  TEXT,
    user_id         TEXT,
    room_id         TEXT,
    idle_timeout_s  REAL,
    last_active_at  REAL,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL
);
CREATE INDEX workers_team ON workers(team);

CREATE TABLE teams (
    name               TEXT PRIMARY KEY,
    leader             TEXT NOT NULL,
    room_id            TEXT,
    leader_dm_room_id  TEXT,
    spec               TEXT NOT NULL DEFAULT '{}',
    state              TEXT NOT NULL,
    max_workers        INTEGER,
    created_at         REAL NOT NULL,
    updated_at         REAL NOT NULL
);

CREATE TABLE humans (
    name          TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    level         TEXT NOT NULL,
    email         TEXT,
    teams         TEXT NOT NULL DEFAULT '[]',
    display_name  TEXT,
    state         TEXT NOT NULL,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL
);

CREATE TABLE sync_state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE processed_events (
    event_id     TEXT PRIMARY KEY,
    room_id      TEXT NOT NULL,
    op_id        INTEGER,
    outcome      TEXT NOT NULL,
    processed_at REAL NOT NULL
);

CREATE TABLE confirmations (
    code        TEXT PRIMARY KEY,
    sender      TEXT NOT NULL,
    room_id     TEXT NOT NULL,
    command     TEXT NOT NULL,
    expires_at  REAL NOT NULL
);

CREATE TABLE audit (
    audit_id  INTEGER PRIMARY KEY AUTOINCREMENT,
    ts        REAL NOT NULL,
    actor     TEXT NOT NULL,
    room_id   TEXT,
    command   TEXT NOT NULL,
    subject   TEXT,
    op_id     INTEGER,
    decision  TEXT NOT NULL,
    detail    TEXT
);
CREATE INDEX audit_subject ON audit(subject);
