-- sessiond schema, version 5: the live sessions' expiry index moves when a session's expiry has moved by
-- more than 15 minutes, not at every turn.
-- Every turn sets expiresAt, and taking the old entry out of session_live_expiry cost a random page per turn
-- (1.1 WAL frames, second only to the session row itself). The index now holds expiryBound, which never
-- exceeds expiresAt and trails it by at most 15 minutes (900,000 ms); the triggers below keep it so for
-- every statement that writes expiresAt. The sweeper still expires a session exactly at its expiresAt (it
-- scans the bound's range and checks the row), and eviction reads a few dozen sessions in the bound's order
-- and takes the one closest to expiry.
ALTER TABLE session ADD COLUMN expiryBound INTEGER NOT NULL DEFAULT 0;
UPDATE session SET expiryBound = expiresAt;
CREATE TRIGGER session_expiry_bound_insert AFTER INSERT ON session BEGIN
    UPDATE session SET expiryBound = new.expiresAt WHERE pk = new.pk;
END;
CREATE TRIGGER session_expiry_bound_update AFTER UPDATE OF expiresAt ON session
WHEN new.expiresAt < new.expiryBound OR new.expiresAt - new.expiryBound > 900000 BEGIN
    UPDATE session SET expiryBound = new.expiresAt WHERE pk = new.pk;
END;
DROP INDEX session_live_expiry;
CREATE INDEX session_live_expiry ON session(tenant, expiryBound) WHERE status IN ('active', 'non_resumable');
