-- sessiond schema, version 2: fewer indexes rewritten by every turn.
-- A turn sets lastUsedAt and expiresAt, and every index that holds one of them costs a write to a random
-- page per turn. Two such indexes become one: a partial index over live sessions serves both expiry and
-- eviction (the idle session closest to expiry goes first, which is the least recently used one when TTLs
-- are equal). Dormant sessions have their own partial index, which turns on live sessions never touch.
DROP INDEX session_tenant_lastUsed;
DROP INDEX session_status_expires;
CREATE INDEX session_live_expiry ON session(tenant, expiresAt) WHERE status IN ('active', 'non_resumable');
CREATE INDEX session_dormant_expiry ON session(tenant, expiresAt) WHERE status IN ('expired', 'closed');
