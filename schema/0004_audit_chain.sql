-- sessiond schema, version 4: a session's audit rows are linked, not indexed by session.
-- The index audit_tenant_session(tenant, sessionId, id) took an entry on a random page for every audit row,
-- two per turn (the grant and the completion), the most WAL frames of any B-tree under turns. Each row now
-- names the session's previous row (prevId), and the session names its newest (lastAuditId); a session's log
-- is read by following the links from there. The session row is rewritten by every turn anyway, and the
-- audit table itself only grows at its end. A deleted session's newest row is its deletion, found through a
-- small partial index of those rows. Retention removes the oldest rows, which only shortens the chains.
ALTER TABLE audit ADD COLUMN prevId INTEGER;
ALTER TABLE session ADD COLUMN lastAuditId INTEGER;
UPDATE audit SET prevId = (
    SELECT max(older.id) FROM audit AS older
    WHERE older.tenant = audit.tenant AND older.sessionId = audit.sessionId AND older.id < audit.id)
WHERE sessionId IS NOT NULL;
UPDATE session SET lastAuditId = (
    SELECT max(id) FROM audit WHERE audit.tenant = session.tenant AND audit.sessionId = session.id);
CREATE INDEX audit_session_end ON audit(tenant, sessionId)
    WHERE action = 'session.delete' OR action = 'session.evict' OR action = 'session.purge';
DROP INDEX audit_tenant_session;
