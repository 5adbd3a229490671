-- sessiond schema, version 3: the same CHECK constraints, without a temporary table per statement.
-- SQLite evaluates `x IN ('a', 'b', 'c')` against three or more constants by filling a temporary B-tree
-- each time a statement runs, and a turn runs five statements that check one (two session updates, a chain
-- link, two messages). Written as comparisons, the constraints allow exactly the same values and cost a
-- few opcodes. The rows already stored satisfy both forms, so the definitions are edited in place, as
-- SQLite documents for changing CHECK constraints without copying a table
-- (https://sqlite.org/lang_altertable.html#otheralter); `RESET` reloads this connection's schema, and the
-- table created and dropped at the end changes the schema cookie so that every other connection does too.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema
SET sql = replace(sql,
    'CHECK (status IN (''active'', ''expired'', ''non_resumable'', ''closed''))',
    'CHECK (status = ''active'' OR status = ''expired'' OR status = ''non_resumable'' OR status = ''closed'')')
WHERE type = 'table' AND name = 'session';
UPDATE sqlite_schema
SET sql = replace(sql,
    'CHECK (reason IN (''created'', ''forked'', ''changed_by_cli'', ''fresh_after_failure'', ''fresh_after_expiry''))',
    'CHECK (reason = ''created'' OR reason = ''forked'' OR reason = ''changed_by_cli''
               OR reason = ''fresh_after_failure'' OR reason = ''fresh_after_expiry'')')
WHERE type = 'table' AND name = 'chainLink';
UPDATE sqlite_schema
SET sql = replace(sql,
    'CHECK (role IN (''user'', ''assistant'', ''system'', ''tool''))',
    'CHECK (role = ''user'' OR role = ''assistant'' OR role = ''system'' OR role = ''tool'')')
WHERE type = 'table' AND name = 'message';
PRAGMA writable_schema = RESET;
CREATE TABLE schemaCookieBump(x);
DROP TABLE schemaCookieBump;
