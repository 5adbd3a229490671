-- sessiond schema, version 6: a session's chain links are linked, not keyed by session.
-- chainLink's key (sessionPk, seq) put every new link on the page of its session's older links, a random page
-- per turn that changed the CLI session id (1.4 WAL frames, the most after the session row). Links now get
-- ascending ids, so the table only grows at its end; each names the session's previous link (prevId), and the
-- session names its newest (lastChainLinkId), as schema 0004 did for audit rows. A chain is read, and deleted
-- with its session, by following the links from there; with no foreign key left, the store deletes a session's
-- links itself before the session.
CREATE TABLE linkedChainLink (
    id INTEGER PRIMARY KEY,
    sessionPk INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    prevId INTEGER,
    cliSessionId TEXT NOT NULL,
    reason TEXT NOT NULL
        CHECK (reason = 'created' OR reason = 'forked' OR reason = 'changed_by_cli'
               OR reason = 'fresh_after_failure' OR reason = 'fresh_after_expiry'),
    at INTEGER NOT NULL
);
-- Copied in (sessionPk, seq) order, so a link's predecessor in its chain is the row just before it.
INSERT INTO linkedChainLink(sessionPk, seq, cliSessionId, reason, at)
    SELECT sessionPk, seq, cliSessionId, reason, at FROM chainLink ORDER BY sessionPk, seq;
UPDATE linkedChainLink SET prevId = id - 1
WHERE (SELECT previous.sessionPk FROM linkedChainLink AS previous WHERE previous.id = linkedChainLink.id - 1) = sessionPk;
ALTER TABLE session ADD COLUMN lastChainLinkId INTEGER;
UPDATE session SET lastChainLinkId = newest.id
FROM (SELECT sessionPk, max(id) AS id FROM linkedChainLink GROUP BY sessionPk) AS newest
WHERE newest.sessionPk = session.pk;
DROP TABLE chainLink;
ALTER TABLE linkedChainLink RENAME TO chainLink;
