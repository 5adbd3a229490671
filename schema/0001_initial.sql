-- sessiond schema, version 1. Never edit this file once released: add a new numbered file instead.
-- Times are INTEGER milliseconds since the Unix epoch (UTC).

-- One conversation of one AI CLI, named by a key that is unique per tenant.
CREATE TABLE session (
    pk INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    key TEXT NOT NULL,
    tool TEXT NOT NULL,
    cwd TEXT,
    -- Head of the chain: the CLI session id the next turn resumes.
    cliSessionId TEXT,
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'expired', 'non_resumable', 'closed')),
    createdAt INTEGER NOT NULL,
    lastUsedAt INTEGER NOT NULL,
    expiresAt INTEGER NOT NULL,
    ttlSeconds INTEGER NOT NULL CHECK (ttlSeconds > 0),
    turnCount INTEGER NOT NULL DEFAULT 0,
    resumeAttempts INTEGER NOT NULL DEFAULT 0,
    resumeSuccesses INTEGER NOT NULL DEFAULT 0,
    consecutiveFailures INTEGER NOT NULL DEFAULT 0,
    totalFailures INTEGER NOT NULL DEFAULT 0,
    lastFailureReason TEXT,
    costUsd REAL NOT NULL DEFAULT 0,
    -- The cumulative cost the CLI last reported for the head (Claude Code reports a running total).
    cliCostUsd REAL NOT NULL DEFAULT 0,
    inputTokens INTEGER NOT NULL DEFAULT 0,
    outputTokens INTEGER NOT NULL DEFAULT 0,
    messageCount INTEGER NOT NULL DEFAULT 0,
    transcriptBytes INTEGER NOT NULL DEFAULT 0,
    metadata TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
    labels TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(labels)),
    -- Registry id of the session this one was forked from (kept after the parent is deleted).
    parentId TEXT,
    -- The first turn of a fork resumes the parent's head with --fork-session.
    forkPending INTEGER NOT NULL DEFAULT 0,
    -- Why the next turn must start fresh even though a head may exist (a FreshReason), until a turn succeeds.
    pendingFresh TEXT,
    -- What the turn under the current lease does: 'resume', 'fork' or 'fresh:<FreshReason>'.
    turnMode TEXT,
    leaseToken TEXT,
    leaseHolder TEXT,
    -- Grows with every grant; never reset, so a fence identifies one grant.
    leaseFence INTEGER NOT NULL DEFAULT 0,
    leaseExpiresAt INTEGER,
    UNIQUE (tenant, key)
);
CREATE INDEX session_tenant ON session(tenant);
CREATE INDEX session_tenant_lastUsed ON session(tenant, lastUsedAt);
CREATE INDEX session_status_expires ON session(status, expiresAt);
CREATE INDEX session_lease_expires ON session(leaseExpiresAt) WHERE leaseExpiresAt IS NOT NULL;

-- Labels, one row each, kept in step with session.labels by triggers for indexed filtering.
CREATE TABLE sessionLabel (
    tenant TEXT NOT NULL,
    label TEXT NOT NULL,
    sessionPk INTEGER NOT NULL REFERENCES session(pk) ON DELETE CASCADE,
    PRIMARY KEY (tenant, label, sessionPk)
) WITHOUT ROWID;
CREATE INDEX sessionLabel_session ON sessionLabel(sessionPk);

CREATE TRIGGER session_labels_insert AFTER INSERT ON session WHEN new.labels <> '[]' BEGIN
    INSERT OR IGNORE INTO sessionLabel(tenant, label, sessionPk)
        SELECT new.tenant, value, new.pk FROM json_each(new.labels) WHERE type = 'text';
END;
CREATE TRIGGER session_labels_update AFTER UPDATE OF labels ON session BEGIN
    DELETE FROM sessionLabel WHERE sessionPk = new.pk;
    INSERT OR IGNORE INTO sessionLabel(tenant, label, sessionPk)
        SELECT new.tenant, value, new.pk FROM json_each(new.labels) WHERE type = 'text';
END;

-- Every CLI session id a session has had, in order, and why it changed.
CREATE TABLE chainLink (
    sessionPk INTEGER NOT NULL REFERENCES session(pk) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    cliSessionId TEXT NOT NULL,
    reason TEXT NOT NULL
        CHECK (reason IN ('created', 'forked', 'changed_by_cli', 'fresh_after_failure', 'fresh_after_expiry')),
    at INTEGER NOT NULL,
    PRIMARY KEY (sessionPk, seq)
) WITHOUT ROWID;

-- Append-only message history.
CREATE TABLE message (
    sessionPk INTEGER NOT NULL REFERENCES session(pk) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'system', 'tool')),
    content TEXT NOT NULL,
    inputTokens INTEGER,
    outputTokens INTEGER,
    at INTEGER NOT NULL,
    PRIMARY KEY (sessionPk, seq)
);

-- The CLI's own transcript per (session, CLI session id), stored as appended chunks.
CREATE TABLE transcript (
    sessionPk INTEGER NOT NULL REFERENCES session(pk) ON DELETE CASCADE,
    cliSessionId TEXT NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    updatedAt INTEGER NOT NULL,
    PRIMARY KEY (sessionPk, cliSessionId)
) WITHOUT ROWID;

CREATE TABLE transcriptChunk (
    sessionPk INTEGER NOT NULL,
    cliSessionId TEXT NOT NULL,
    start INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (sessionPk, cliSessionId, start),
    FOREIGN KEY (sessionPk, cliSessionId) REFERENCES transcript(sessionPk, cliSessionId) ON DELETE CASCADE
);

-- Append-only audit log. It has no foreign keys: rows outlive the sessions they describe.
CREATE TABLE audit (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    tenant TEXT NOT NULL,
    actor TEXT NOT NULL,
    sessionId TEXT,
    key TEXT,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_tenant ON audit(tenant, id);
CREATE INDEX audit_tenant_session ON audit(tenant, sessionId, id);
CREATE INDEX audit_tenant_action ON audit(tenant, action, id);

-- API tokens: only a SHA-256 hash of the secret is kept.
CREATE TABLE apiToken (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    hash BLOB NOT NULL UNIQUE,
    admin INTEGER NOT NULL DEFAULT 0,
    label TEXT,
    createdAt INTEGER NOT NULL,
    revokedAt INTEGER
);

-- Counters that keep `stats` cheap at any size: no query scans sessions.
CREATE TABLE tenantStatus (
    tenant TEXT NOT NULL,
    status TEXT NOT NULL,
    count INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, status)
) WITHOUT ROWID;

CREATE TABLE tenantCreatedDay (
    tenant TEXT NOT NULL,
    day INTEGER NOT NULL,
    count INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, day)
) WITHOUT ROWID;

-- Turn and resume counters, one row per tenant, updated by the turn that changes them.
CREATE TABLE tenantCounter (
    tenant TEXT PRIMARY KEY,
    turns INTEGER NOT NULL DEFAULT 0,
    turnErrors INTEGER NOT NULL DEFAULT 0,
    resumeAttempts INTEGER NOT NULL DEFAULT 0,
    resumeSuccesses INTEGER NOT NULL DEFAULT 0,
    resumeFailures INTEGER NOT NULL DEFAULT 0,
    freshStarts INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE tenantFailureReason (
    tenant TEXT NOT NULL,
    reason TEXT NOT NULL,
    count INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, reason)
) WITHOUT ROWID;

CREATE TRIGGER session_stats_insert AFTER INSERT ON session BEGIN
    INSERT OR IGNORE INTO tenantStatus(tenant, status) VALUES (new.tenant, new.status);
    UPDATE tenantStatus SET count = count + 1 WHERE tenant = new.tenant AND status = new.status;
    INSERT OR IGNORE INTO tenantCreatedDay(tenant, day) VALUES (new.tenant, new.createdAt / 86400000);
    UPDATE tenantCreatedDay SET count = count + 1 WHERE tenant = new.tenant AND day = new.createdAt / 86400000;
END;
CREATE TRIGGER session_stats_delete AFTER DELETE ON session BEGIN
    UPDATE tenantStatus SET count = count - 1 WHERE tenant = old.tenant AND status = old.status;
    UPDATE tenantCreatedDay SET count = count - 1 WHERE tenant = old.tenant AND day = old.createdAt / 86400000;
END;
CREATE TRIGGER session_stats_status AFTER UPDATE OF status ON session WHEN old.status <> new.status BEGIN
    UPDATE tenantStatus SET count = count - 1 WHERE tenant = old.tenant AND status = old.status;
    INSERT OR IGNORE INTO tenantStatus(tenant, status) VALUES (new.tenant, new.status);
    UPDATE tenantStatus SET count = count + 1 WHERE tenant = new.tenant AND status = new.status;
END;
