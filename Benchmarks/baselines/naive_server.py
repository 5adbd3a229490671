#!/usr/bin/env python3
"""The naive baseline for sessiond's benchmark: what a team writes in an afternoon.

asyncio + the standard library's sqlite3 in WAL mode (synchronous=NORMAL, like sessiond's default), one
transaction per request, run directly on the event loop: no thread pool, no batching, no group commit,
one request at a time per connection. It is a benchmark baseline only and is never shipped.

It speaks sessiond's wire protocol (docs/PROTOCOL.md): 4-byte big-endian length-prefixed frames of
JSON-RPC 2.0, over TCP. It implements the methods the benchmark workloads use, with the same params and
result shapes: hello, health, session.acquire, session.complete, session.release, session.get,
session.list, session.history, messages.append, messages.list. Everything else answers method_not_found.

It is honest: the same schema as sessiond (schema/*.sql from the repository, triggers included), the same
rows written per operation as sessiond (session, chain link, messages, audit entries, the per-tenant counter
row), real commits. No auth (single tenant "local", like sessiond with no tokens on loopback).

    python3 naive_server.py --listen 127.0.0.1:0 --db /tmp/naive.sqlite [--prepopulate 100000]
    LISTENING tcp 127.0.0.1:54321

--prepopulate N creates sessions bench:0 ... bench:N-1, each with one completed turn, before it listens,
so that a benchmark's turns resume like Redis's prepopulated ones (see redis.sh). A database made by
sessiond or by `sessiond-bench prefill` (same schema) can be used as it is, and is much faster to make.

Python 3.9+, standard library only.
"""

import argparse
import asyncio
import glob
import json
import os
import secrets
import signal
import sqlite3
import struct
import sys
import time
import uuid

SERVER_NAME = "naive-python"
SERVER_VERSION = "0.1.0"
PROTOCOL_VERSION = 1
TENANT = "local"
MAX_FRAME_BYTES = 16 * 1024 * 1024
DEFAULT_TTL_MS = 24 * 3600 * 1000
MAX_TTL_S = 365 * 24 * 3600
DEFAULT_LEASE_MS = 600 * 1000
MAX_LEASE_S = 24 * 3600
MAX_SESSIONS_PER_TENANT = 100_000
MAX_RESUME_FAILURES = 3
MAX_KEY_BYTES = 1024

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SCHEMA_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "schema"))

SESSION_COLUMNS = (
    "pk, id, tenant, key, tool, cwd, cliSessionId, status, createdAt, lastUsedAt, expiresAt, ttlSeconds, "
    "turnCount, resumeAttempts, resumeSuccesses, consecutiveFailures, totalFailures, lastFailureReason, "
    "costUsd, cliCostUsd, inputTokens, outputTokens, messageCount, transcriptBytes, metadata, labels, parentId, "
    "forkPending, pendingFresh, turnMode, leaseToken, leaseHolder, leaseFence, leaseExpiresAt, lastChainLinkId"
)
COLUMN_NAMES = [c.strip() for c in SESSION_COLUMNS.split(",")]

CHAIN_REASON_FOR_FRESH = {
    "new": "created",
    "stale": "created",
    "expired": "fresh_after_expiry",
    "non_resumable": "fresh_after_failure",
    "resume_failed": "fresh_after_failure",
}
ROLES = ("user", "assistant", "system", "tool")


class RPCError(Exception):
    CODES = {
        "parse_error": -32700,
        "invalid_request": -32600,
        "method_not_found": -32601,
        "invalid_params": -32602,
        "internal": -32603,
        "not_found": -32001,
        "lease_held": -32002,
        "stale_lease": -32003,
        "too_large": -32006,
        "conflict": -32009,
        "unavailable": -32011,
    }

    def __init__(self, reason, message, **data):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.data = data

    def to_json(self):
        data = {"reason": self.reason}
        data.update(self.data)
        return {"code": self.CODES[self.reason], "message": self.message, "data": data}


def now_ms():
    return int(round(time.time() * 1000))


def fmt_date(ms):
    seconds, millis = divmod(int(ms), 1000)
    t = time.gmtime(seconds)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (
        t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, millis)


# ---------------------------------------------------------------------------------------------------
# Parameter checks (the same rules as sessiond's, so a bad request fails the same way)


def p_str(params, name, required=False, max_bytes=None, nonempty=False):
    value = params.get(name)
    if value is None:
        if required:
            raise RPCError("invalid_params", "%s is required" % name)
        return None
    if not isinstance(value, str):
        raise RPCError("invalid_params", "%s must be a string" % name)
    if nonempty and not value:
        raise RPCError("invalid_params", "%s must not be empty" % name)
    if max_bytes is not None and len(value.encode("utf-8")) > max_bytes:
        raise RPCError("too_large", "%s is over %d bytes" % (name, max_bytes))
    return value


def p_int(params, name, lo, hi, required=False):
    value = params.get(name)
    if value is None:
        if required:
            raise RPCError("invalid_params", "%s is required" % name)
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise RPCError("invalid_params", "%s must be an integer" % name)
    value = int(value)
    if not lo <= value <= hi:
        raise RPCError("invalid_params", "%s must be between %d and %d" % (name, lo, hi))
    return value


def p_num(params, name):
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != value:
        raise RPCError("invalid_params", "%s must be a finite number >= 0" % name)
    return float(value)


def p_lease(params, required=True):
    lease = params.get("lease")
    if lease is None and not required:
        return None
    if not isinstance(lease, dict):
        raise RPCError("invalid_params", "lease is required")
    token = p_str(lease, "token", required=True)
    fence = p_int(lease, "fence", 0, 2**62, required=True)
    return token, fence


def p_messages(params, required=False):
    messages = params.get("messages")
    if messages is None:
        if required:
            raise RPCError("invalid_params", "messages is required")
        return []
    if not isinstance(messages, list):
        raise RPCError("invalid_params", "messages must be an array")
    if len(messages) > 1000:
        raise RPCError("invalid_params", "messages: at most 1000 per call")
    out = []
    for m in messages:
        if not isinstance(m, dict):
            raise RPCError("invalid_params", "messages must be objects")
        role = p_str(m, "role", required=True)
        if role not in ROLES:
            raise RPCError("invalid_params", "role must be one of user, assistant, system, tool")
        content = p_str(m, "content", required=True)
        out.append((role, content, p_int(m, "inputTokens", 0, 2**31 - 1), p_int(m, "outputTokens", 0, 2**31 - 1)))
    return out


# ---------------------------------------------------------------------------------------------------
# The store: plain sqlite3 calls on the event loop thread, one transaction per request.


class Store:
    def __init__(self, path, schema_dir, synchronous, max_sessions_per_tenant=MAX_SESSIONS_PER_TENANT):
        self.max_sessions_per_tenant = max_sessions_per_tenant
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = %s" % synchronous)
        self.db.execute("PRAGMA foreign_keys = ON")
        self.db.execute("PRAGMA busy_timeout = 5000")
        self.migrate(schema_dir)

    def migrate(self, schema_dir):
        self.db.execute("CREATE TABLE IF NOT EXISTS naive_migrations (name TEXT PRIMARY KEY)")
        applied = {row[0] for row in self.db.execute("SELECT name FROM naive_migrations")}
        # A database that sessiond (or `sessiond-bench prefill`) created records its migrations in GRDB's
        # table, by file name without ".sql": the same schema, so it is used as it is.
        if self.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'grdb_migrations'").fetchone():
            applied |= {row[0] + ".sql" for row in self.db.execute("SELECT identifier FROM grdb_migrations")}
        files = sorted(glob.glob(os.path.join(schema_dir, "[0-9][0-9][0-9][0-9]_*.sql")))
        if not files:
            raise SystemExit("naive_server: no schema files in %s (pass --schema-dir)" % schema_dir)
        for path in files:
            name = os.path.basename(path)
            if name in applied:
                continue
            with open(path, encoding="utf-8") as f:
                sql = f.read()
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for statement in split_sql(sql):
                    self.db.execute(statement)
                self.db.execute("INSERT INTO naive_migrations(name) VALUES (?)", (name,))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    # -- transactions --------------------------------------------------------------------------------

    def write(self, body):
        """Runs body in its own BEGIN IMMEDIATE ... COMMIT: one transaction per request."""
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise RPCError("unavailable", "database unavailable: %s" % e)
        try:
            result = body(db)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    def read(self, body):
        db = self.db
        db.execute("BEGIN")
        try:
            return body(db)
        finally:
            db.execute("COMMIT")

    # -- helpers ---------------------------------------------------------------------------------------

    @staticmethod
    def row_by_key(db, key):
        cur = db.execute("SELECT %s FROM session WHERE tenant = ? AND key = ?" % SESSION_COLUMNS, (TENANT, key))
        row = cur.fetchone()
        return dict(zip(COLUMN_NAMES, row)) if row else None

    @staticmethod
    def row_by_pk(db, pk):
        row = db.execute("SELECT %s FROM session WHERE pk = ?" % SESSION_COLUMNS, (pk,)).fetchone()
        return dict(zip(COLUMN_NAMES, row)) if row else None

    @staticmethod
    def require(db, session_id):
        if not isinstance(session_id, str) or not session_id:
            raise RPCError("invalid_params", "sessionId is required")
        row = db.execute("SELECT %s FROM session WHERE id = ?" % SESSION_COLUMNS, (session_id,)).fetchone()
        if row is None:
            raise RPCError("not_found", "session not found")
        row = dict(zip(COLUMN_NAMES, row))
        if row["tenant"] != TENANT:
            raise RPCError("not_found", "session not found")
        return row

    @staticmethod
    def audit(db, row, actor, action, at, detail=None, outcome="ok"):
        db.execute(
            "INSERT INTO audit(at, tenant, actor, sessionId, key, action, outcome, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (at, row["tenant"], actor, row["id"], row["key"], action, outcome,
             json.dumps(detail, sort_keys=True, separators=(",", ":")) if detail else "{}"))

    @staticmethod
    def count(db, turns=0, turn_errors=0, resume_attempts=0, resume_successes=0, resume_failures=0,
              fresh_starts=0):
        """Adds one operation's changes to the tenant's counters, in one statement (like sessiond)."""
        db.execute(
            "INSERT INTO tenantCounter(tenant, turns, turnErrors, resumeAttempts, resumeSuccesses, resumeFailures, "
            "freshStarts) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(tenant) DO UPDATE SET "
            "turns = turns + excluded.turns, turnErrors = turnErrors + excluded.turnErrors, "
            "resumeAttempts = resumeAttempts + excluded.resumeAttempts, "
            "resumeSuccesses = resumeSuccesses + excluded.resumeSuccesses, "
            "resumeFailures = resumeFailures + excluded.resumeFailures, "
            "freshStarts = freshStarts + excluded.freshStarts",
            (TENANT, turns, turn_errors, resume_attempts, resume_successes, resume_failures, fresh_starts))

    @staticmethod
    def live_lease(row, now):
        return row["leaseToken"] is not None and (row["leaseExpiresAt"] or 0) > now

    @staticmethod
    def info(row, now):
        s = {
            "id": row["id"], "tenant": row["tenant"], "key": row["key"], "tool": row["tool"],
            "status": row["status"], "createdAt": fmt_date(row["createdAt"]),
            "lastUsedAt": fmt_date(row["lastUsedAt"]), "expiresAt": fmt_date(row["expiresAt"]),
            "ttlSeconds": row["ttlSeconds"], "turnCount": row["turnCount"],
            "resumeAttempts": row["resumeAttempts"], "resumeSuccesses": row["resumeSuccesses"],
            "consecutiveFailures": row["consecutiveFailures"], "totalFailures": row["totalFailures"],
            "costUsd": row["costUsd"], "inputTokens": row["inputTokens"], "outputTokens": row["outputTokens"],
            "messageCount": row["messageCount"], "transcriptBytes": row["transcriptBytes"],
            "metadata": json.loads(row["metadata"]) if row["metadata"] != "{}" else {},
            "labels": json.loads(row["labels"]) if row["labels"] != "[]" else [],
        }
        for name in ("cwd", "cliSessionId", "lastFailureReason", "parentId"):
            if row[name] is not None:
                s[name] = row[name]
        if Store.live_lease(row, now):
            s["lease"] = {"holder": row["leaseHolder"] or "", "fence": row["leaseFence"],
                          "expiresAt": fmt_date(row["leaseExpiresAt"])}
        return s

    @staticmethod
    def check_lease(row, token, fence, now):
        if row["leaseToken"] is None or row["leaseFence"] != fence or not secrets.compare_digest(
                row["leaseToken"], token):
            raise RPCError("stale_lease", "the lease is not current (current fence %d)" % row["leaseFence"],
                           currentFence=row["leaseFence"])
        if row["leaseExpiresAt"] is None or row["leaseExpiresAt"] <= now:
            raise RPCError("stale_lease", "the lease expired", currentFence=row["leaseFence"])

    @staticmethod
    def insert_messages(db, pk, after, messages, now):
        """Inserts messages numbered after `after`; the caller updates session.messageCount."""
        db.executemany(
            "INSERT INTO message(sessionPk, seq, role, content, inputTokens, outputTokens, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(pk, after + i + 1, m[0], m[1], m[2], m[3], now) for i, m in enumerate(messages)])

    # -- methods ---------------------------------------------------------------------------------------

    def acquire(self, params, actor):
        key = p_str(params, "key", required=True, nonempty=True, max_bytes=MAX_KEY_BYTES)
        tool = p_str(params, "tool", nonempty=True, max_bytes=64) or "claude"
        cwd = p_str(params, "cwd", max_bytes=4096)
        holder = p_str(params, "holder", max_bytes=256) or actor
        ttl = p_int(params, "ttlSeconds", 1, MAX_TTL_S)
        ttl_ms = ttl * 1000 if ttl is not None else DEFAULT_TTL_MS
        lease_s = p_int(params, "leaseSeconds", 1, MAX_LEASE_S)
        lease_ms = lease_s * 1000 if lease_s is not None else DEFAULT_LEASE_MS
        p_int(params, "waitMs", 0, 86_400_000)
        metadata = params.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise RPCError("invalid_params", "metadata must be an object")
        labels = params.get("labels")
        if labels is not None and (not isinstance(labels, list) or not all(isinstance(x, str) for x in labels)):
            raise RPCError("invalid_params", "labels must be an array of strings")

        def body(db):
            now = now_ms()
            created = False
            row = self.row_by_key(db, key)
            if row is None:
                count = db.execute(
                    "SELECT COALESCE(SUM(count), 0) FROM tenantStatus WHERE tenant = ?", (TENANT,)).fetchone()[0]
                if count >= self.max_sessions_per_tenant:
                    victim = db.execute(
                        "SELECT %s FROM session WHERE tenant = ? AND (leaseExpiresAt IS NULL OR leaseExpiresAt <= ?) "
                        "ORDER BY lastUsedAt LIMIT 1" % SESSION_COLUMNS, (TENANT, now)).fetchone()
                    if victim is None:
                        raise RPCError("too_large", "the tenant is at its session cap and every session is in use")
                    victim = dict(zip(COLUMN_NAMES, victim))
                    # A chain's links are linked from the session's newest (schema 0006), not keyed by it.
                    db.execute(
                        "WITH RECURSIVE link(id) AS (SELECT ? UNION ALL SELECT chainLink.prevId FROM chainLink "
                        "JOIN link ON chainLink.id = link.id) DELETE FROM chainLink WHERE id IN link",
                        (victim["lastChainLinkId"],))
                    db.execute("DELETE FROM session WHERE pk = ?", (victim["pk"],))
                    self.audit(db, victim, actor, "session.evict", now,
                               {"cause": "tenant_cap", "cap": self.max_sessions_per_tenant})
                cur = db.execute(
                    "INSERT INTO session(id, tenant, key, tool, cwd, createdAt, lastUsedAt, expiresAt, ttlSeconds, "
                    "metadata, labels) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (str(uuid.uuid4()), TENANT, key, tool, cwd, now, now, now + ttl_ms, ttl_ms // 1000,
                     json.dumps(metadata, sort_keys=True, separators=(",", ":")) if metadata else "{}",
                     json.dumps(labels, separators=(",", ":")) if labels else "[]"))
                row = self.row_by_pk(db, cur.lastrowid)
                self.audit(db, row, actor, "session.create", now)
                created = True

            if self.live_lease(row, now):
                return ("held", row)
            if row["leaseToken"] is not None:
                self.audit(db, row, actor, "lease.takeover", now,
                           {"previousHolder": row["leaseHolder"] or "", "previousFence": row["leaseFence"]})

            status, head, pending = row["status"], row["cliSessionId"], row["pendingFresh"]
            if status == "closed":
                status, head, pending = "active", None, "stale"
                self.audit(db, row, actor, "session.update", now, {"status": "active", "cause": "reopened"})
            elif status == "expired" or (status == "active" and row["expiresAt"] <= now):
                if status == "active":
                    self.audit(db, row, actor, "session.expire", now, {"idleSince": fmt_date(row["lastUsedAt"])})
                status, head, pending = "active", None, "expired"

            if status == "non_resumable":
                decision, mode = {"action": "fresh", "reason": "non_resumable", "fork": False}, "fresh:non_resumable"
            elif pending is not None:
                decision, mode = {"action": "fresh", "reason": pending, "fork": False}, "fresh:" + pending
            elif head is not None:
                fork = bool(row["forkPending"])
                decision = {"action": "resume", "cliSessionId": head, "fork": fork}
                mode = "fork" if fork else "resume"
            else:
                decision, mode = {"action": "fresh", "reason": "new", "fork": False}, "fresh:new"

            token = secrets.token_hex(16)
            fence = row["leaseFence"] + 1
            ttl_now = ttl_ms if created else row["ttlSeconds"] * 1000
            db.execute(
                "UPDATE session SET status = ?, cliSessionId = ?, pendingFresh = ?, turnMode = ?, leaseToken = ?, "
                "leaseHolder = ?, leaseFence = ?, leaseExpiresAt = ?, lastUsedAt = ?, expiresAt = ?, "
                "cwd = COALESCE(?, cwd) WHERE pk = ?",
                (status, head, pending, mode, token, holder, fence, now + lease_ms, now, now + ttl_now, cwd,
                 row["pk"]))
            detail = {"fence": fence, "holder": holder, "decision": decision["action"]}
            if "cliSessionId" in decision:
                detail["cliSessionId"] = decision["cliSessionId"]
            self.audit(db, row, actor, "lease.grant", now, detail)
            if decision["action"] == "fresh":
                self.audit(db, row, actor, "fresh_start", now, {"cause": decision["reason"]})
                self.count(db, fresh_starts=1)
            transcript = None
            if decision["action"] == "resume":
                size = db.execute("SELECT size FROM transcript WHERE sessionPk = ? AND cliSessionId = ?",
                                  (row["pk"], decision["cliSessionId"])).fetchone()
                if size and size[0] > 0:
                    transcript = {"cliSessionId": decision["cliSessionId"], "size": size[0]}
            row.update(status=status, cliSessionId=head, pendingFresh=pending, turnMode=mode, leaseToken=token,
                       leaseHolder=holder, leaseFence=fence, leaseExpiresAt=now + lease_ms, lastUsedAt=now,
                       expiresAt=now + ttl_now)
            if cwd is not None:
                row["cwd"] = cwd
            result = {
                "session": self.info(row, now), "created": created,
                "lease": {"token": token, "fence": fence, "holder": holder, "expiresAt": fmt_date(now + lease_ms)},
                "decision": decision,
            }
            if transcript:
                result["transcript"] = transcript
            return ("granted", result)

        return body

    def lease_conflict(self, row, actor):
        def body(db):
            self.audit(db, row, actor, "lease.conflict", now_ms(), {"holder": row["leaseHolder"] or ""},
                       outcome="refused")
        return body

    def complete(self, params, actor):
        session_id = p_str(params, "sessionId", required=True)
        token, fence = p_lease(params)
        outcome = p_str(params, "outcome", required=True)
        if outcome not in ("ok", "resume_failed", "error"):
            raise RPCError("invalid_params", "outcome must be ok, resume_failed or error")
        reported = p_str(params, "cliSessionId", max_bytes=256)
        if outcome == "ok" and not reported:
            raise RPCError("invalid_params", "cliSessionId is required with outcome ok")
        reason = p_str(params, "reason", max_bytes=1024)
        cost = p_num(params, "costUsd")
        cli_total = p_num(params, "cliTotalCostUsd")
        input_tokens = p_int(params, "inputTokens", 0, 2**31 - 1)
        output_tokens = p_int(params, "outputTokens", 0, 2**31 - 1)
        messages = p_messages(params)
        keep = params.get("keepLease") is True

        def body(db):
            now = now_ms()
            row = self.require(db, session_id)
            self.check_lease(row, token, fence, now)
            status, head = row["status"], row["cliSessionId"]
            mode = row["turnMode"] or ("fresh:new" if head is None else "resume")
            consecutive, attempts = row["consecutiveFailures"], row["resumeAttempts"]
            successes, total_failures = row["resumeSuccesses"], row["totalFailures"]
            last_failure, pending, fork_pending = row["lastFailureReason"], row["pendingFresh"], row["forkPending"]
            turns, cli_cost, added = row["turnCount"], row["cliCostUsd"], cost or 0.0
            chain_extended, follow_up = False, None
            delta = {}
            audit_action, audit_outcome, audit_detail = "turn.complete", "ok", {}

            if outcome == "ok":
                chain_reason = None
                if mode in ("resume", "fork"):
                    attempts += 1
                    successes += 1
                    if reported != head:
                        chain_reason = "changed_by_cli" if mode == "resume" else "forked"
                else:
                    if reported != head:
                        chain_reason = CHAIN_REASON_FOR_FRESH.get(mode[len("fresh:"):], "created")
                    status = "active"
                if chain_reason:
                    cur = db.execute(
                        "INSERT INTO chainLink(sessionPk, seq, prevId, cliSessionId, reason, at) VALUES "
                        "(?1, COALESCE((SELECT seq FROM chainLink WHERE id = ?2), 0) + 1, ?2, ?3, ?4, ?5)",
                        (row["pk"], row["lastChainLinkId"], reported, chain_reason, now))
                    row["lastChainLinkId"] = cur.lastrowid
                    head = reported
                    chain_extended = True
                if cli_total is not None:
                    previous = row["cliCostUsd"] if (reported == row["cliSessionId"] or mode == "fork") else 0.0
                    added += max(0.0, cli_total - previous)
                    cli_cost = cli_total
                consecutive, pending, fork_pending = 0, None, 0
                turns += 1
                audit_detail = {"cliSessionId": reported}
                if chain_reason:
                    audit_detail["chainReason"] = chain_reason
                if mode in ("resume", "fork"):
                    audit_action = "resume_ok"
                    delta.update(resume_attempts=1, resume_successes=1)
                delta["turns"] = 1
            elif outcome == "resume_failed":
                why = (reason or "unknown")[:200]
                attempts += 1
                consecutive += 1
                total_failures += 1
                last_failure = why
                if consecutive >= MAX_RESUME_FAILURES and status != "non_resumable":
                    status = "non_resumable"
                mode = "fresh:resume_failed"
                follow_up = {"action": "fresh", "reason": "resume_failed", "fork": False}
                audit_action, audit_outcome = "resume_failed", "failed"
                audit_detail = {"reason": why, "cliSessionId": head, "consecutiveFailures": consecutive,
                                "nonResumable": status == "non_resumable"}
                delta.update(resume_attempts=1, resume_failures=1)
                db.execute(
                    "INSERT INTO tenantFailureReason(tenant, reason, count) VALUES (?, ?, 1) "
                    "ON CONFLICT(tenant, reason) DO UPDATE SET count = count + 1", (TENANT, why))
            else:
                audit_action, audit_outcome = "turn.complete", "failed"
                audit_detail = {"reason": reason or "unknown"}
                delta["turn_errors"] = 1

            message_count = row["messageCount"]
            if messages:
                self.insert_messages(db, row["pk"], message_count, messages, now)
                message_count += len(messages)
            # One audit row for the turn; the lease's release is part of it (as in sessiond).
            audit_detail["leaseReleased"] = not keep
            self.audit(db, row, actor, audit_action, now, audit_detail, outcome=audit_outcome)
            self.count(db, **delta)
            db.execute(
                "UPDATE session SET status = ?, cliSessionId = ?, turnMode = ?, consecutiveFailures = ?, "
                "resumeAttempts = ?, resumeSuccesses = ?, totalFailures = ?, lastFailureReason = ?, "
                "pendingFresh = ?, forkPending = ?, turnCount = ?, costUsd = costUsd + ?, cliCostUsd = ?, "
                "messageCount = ?, inputTokens = inputTokens + ?, outputTokens = outputTokens + ?, lastUsedAt = ?, "
                "expiresAt = ? + ttlSeconds * 1000, "
                "leaseToken = CASE WHEN ? THEN leaseToken END, leaseHolder = CASE WHEN ? THEN leaseHolder END, "
                "leaseExpiresAt = CASE WHEN ? THEN ? END, lastChainLinkId = ? WHERE pk = ?",
                (status, head, mode if keep else None, consecutive, attempts, successes, total_failures,
                 last_failure, pending, fork_pending, turns, added, cli_cost, message_count, input_tokens or 0,
                 output_tokens or 0, now, now, keep, keep, keep, now + DEFAULT_LEASE_MS, row["lastChainLinkId"],
                 row["pk"]))
            # The row as just written, without reading it back (as in sessiond).
            updated = dict(row)
            updated.update(
                status=status, cliSessionId=head, turnMode=mode if keep else None, consecutiveFailures=consecutive,
                resumeAttempts=attempts, resumeSuccesses=successes, totalFailures=total_failures,
                lastFailureReason=last_failure, pendingFresh=pending, forkPending=fork_pending, turnCount=turns,
                costUsd=row["costUsd"] + added, cliCostUsd=cli_cost, messageCount=message_count,
                inputTokens=row["inputTokens"] + (input_tokens or 0),
                outputTokens=row["outputTokens"] + (output_tokens or 0), lastUsedAt=now,
                expiresAt=now + row["ttlSeconds"] * 1000)
            if keep:
                updated["leaseExpiresAt"] = now + DEFAULT_LEASE_MS
            else:
                updated.update(leaseToken=None, leaseHolder=None, leaseExpiresAt=None)
            result = {"session": self.info(updated, now), "chainExtended": chain_extended}
            if keep:
                result["lease"] = {"token": token, "fence": row["leaseFence"],
                                   "holder": row["leaseHolder"] or actor,
                                   "expiresAt": fmt_date(now + DEFAULT_LEASE_MS)}
                if follow_up is None:
                    if updated["status"] == "non_resumable":
                        follow_up = {"action": "fresh", "reason": "non_resumable", "fork": False}
                    elif updated["cliSessionId"]:
                        follow_up = {"action": "resume", "cliSessionId": updated["cliSessionId"], "fork": False}
                    else:
                        follow_up = {"action": "fresh", "reason": "new", "fork": False}
                result["decision"] = follow_up
            return result

        return body

    def release(self, params, actor):
        session_id = p_str(params, "sessionId", required=True)
        token, fence = p_lease(params)

        def body(db):
            now = now_ms()
            row = self.require(db, session_id)
            if row["leaseToken"] is None and row["leaseFence"] == fence:
                return {"released": False}
            if not (row["leaseToken"] is not None and row["leaseFence"] == fence
                    and secrets.compare_digest(row["leaseToken"], token)):
                self.check_lease(row, token, fence, now)  # raises stale_lease
                return {"released": False}
            db.execute("UPDATE session SET leaseToken = NULL, leaseHolder = NULL, leaseExpiresAt = NULL, "
                       "turnMode = NULL WHERE pk = ?", (row["pk"],))
            self.audit(db, row, actor, "lease.release", now, {"fence": row["leaseFence"]})
            return {"released": True}

        return body

    def get(self, params):
        session_id = p_str(params, "sessionId")
        key = p_str(params, "key")
        if session_id is None and key is None:
            raise RPCError("invalid_params", "give sessionId or key")

        def body(db):
            now = now_ms()
            if session_id is not None:
                row = self.require(db, session_id)
            else:
                row = self.row_by_key(db, key)
                if row is None:
                    raise RPCError("not_found", "session not found")
            return {"session": self.info(row, now)}

        return body

    def list(self, params):
        limit = p_int(params, "limit", 1, 1000) or 50
        cursor = p_str(params, "cursor")
        if cursor is not None:
            if not cursor.isdigit() or int(cursor) <= 0:
                raise RPCError("invalid_params", "cursor is not valid")
            cursor_pk = int(cursor)
        else:
            cursor_pk = 2**63 - 1
        status, tool = p_str(params, "status"), p_str(params, "tool")
        prefix, label = p_str(params, "keyPrefix"), p_str(params, "label")

        def body(db):
            now = now_ms()
            sql = "SELECT %s FROM session WHERE tenant = ? AND pk < ?" % SESSION_COLUMNS
            args = [TENANT, cursor_pk]
            if status is not None:
                sql += " AND status = ?"
                args.append(status)
            if tool is not None:
                sql += " AND tool = ?"
                args.append(tool)
            if prefix is not None:
                sql += " AND substr(key, 1, ?) = ?"
                args += [len(prefix), prefix]
            if label is not None:
                sql += " AND pk IN (SELECT sessionPk FROM sessionLabel WHERE tenant = ? AND label = ?)"
                args += [TENANT, label]
            sql += " ORDER BY pk DESC LIMIT ?"
            args.append(limit + 1)
            rows = [dict(zip(COLUMN_NAMES, r)) for r in db.execute(sql, args).fetchall()]
            page = rows[:limit]
            result = {"sessions": [self.info(r, now) for r in page]}
            if len(rows) > limit:
                result["nextCursor"] = str(page[-1]["pk"])
            return result

        return body

    def history(self, params):
        session_id = p_str(params, "sessionId", required=True)

        def body(db):
            row = self.require(db, session_id)
            return {"chain": [
                {"seq": r[0], "cliSessionId": r[1], "reason": r[2], "at": fmt_date(r[3])}
                for r in db.execute("WITH RECURSIVE link(id) AS (SELECT ? UNION ALL SELECT chainLink.prevId "
                                    "FROM chainLink JOIN link ON chainLink.id = link.id) "
                                    "SELECT seq, cliSessionId, reason, at FROM chainLink WHERE id IN link "
                                    "ORDER BY seq", (row["lastChainLinkId"],))]}

        return body

    def messages_append(self, params):
        session_id = p_str(params, "sessionId", required=True)
        lease = p_lease(params, required=False)
        messages = p_messages(params, required=True)
        if not messages:
            raise RPCError("invalid_params", "messages must not be empty")

        def body(db):
            now = now_ms()
            row = self.require(db, session_id)
            if lease is not None:
                self.check_lease(row, lease[0], lease[1], now)
            self.insert_messages(db, row["pk"], row["messageCount"], messages, now)
            db.execute("UPDATE session SET messageCount = messageCount + ? WHERE pk = ?", (len(messages), row["pk"]))
            return {"firstSeq": row["messageCount"] + 1, "lastSeq": row["messageCount"] + len(messages)}

        return body

    def messages_list(self, params):
        session_id = p_str(params, "sessionId", required=True)
        limit = p_int(params, "limit", 1, 1000) or 100
        tail = p_int(params, "tail", 1, 1000)
        after = p_int(params, "afterSeq", 0, 2**62) or 0

        def decode(r):
            m = {"seq": r[0], "role": r[1], "content": r[2], "at": fmt_date(r[5])}
            if r[3] is not None:
                m["inputTokens"] = r[3]
            if r[4] is not None:
                m["outputTokens"] = r[4]
            return m

        def body(db):
            row = self.require(db, session_id)
            columns = "seq, role, content, inputTokens, outputTokens, at"
            if tail is not None:
                rows = db.execute("SELECT %s FROM message WHERE sessionPk = ? ORDER BY seq DESC LIMIT ?" % columns,
                                  (row["pk"], tail)).fetchall()
                return {"messages": [decode(r) for r in reversed(rows)]}
            rows = db.execute("SELECT %s FROM message WHERE sessionPk = ? AND seq > ? ORDER BY seq LIMIT ?" % columns,
                              (row["pk"], after, limit + 1)).fetchall()
            page = [decode(r) for r in rows[:limit]]
            result = {"messages": page}
            if len(rows) > limit:
                result["nextAfterSeq"] = page[-1]["seq"]
            return result

        return body


def prepopulate(store, count, key_format, batch=5000):
    """Creates sessions key_format % i for i in [0, count), each with one completed turn (a head id, one
    chain link, two messages), through the same acquire and complete code as the RPCs, in transactions
    of `batch` sessions. Existing keys are left alone. Set-up for a benchmark, before LISTENING."""
    made = 0
    started = time.monotonic()
    for start in range(0, count, batch):
        def body(db):
            done = 0
            for i in range(start, min(count, start + batch)):
                key = key_format % i
                if store.row_by_key(db, key) is not None:
                    continue
                kind, acquired = store.acquire({"key": key, "holder": "prepopulate"}, "prepopulate")(db)
                if kind != "granted":
                    continue
                store.complete({
                    "sessionId": acquired["session"]["id"], "lease": {
                        "token": acquired["lease"]["token"], "fence": acquired["lease"]["fence"]},
                    "outcome": "ok", "cliSessionId": str(uuid.uuid4()), "costUsd": 0.01, "inputTokens": 10,
                    "outputTokens": 20, "messages": [{"role": "user", "content": "first question"},
                                                     {"role": "assistant", "content": "first answer"}]},
                    "prepopulate")(db)
                done += 1
            return done
        made += store.write(body)
    print("naive_server: prepopulated %d sessions (%s) in %.1f s" % (made, key_format, time.monotonic() - started),
          file=sys.stderr, flush=True)


def split_sql(sql):
    """Splits a schema file into statements, keeping CREATE TRIGGER ... END; bodies whole."""
    statements, current = [], []
    for line in sql.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("--")):
            continue
        current.append(line)
        text = "\n".join(current)
        if sqlite3.complete_statement(text):
            statements.append(text)
            current = []
    if current and "\n".join(current).strip():
        statements.append("\n".join(current))
    return statements


# ---------------------------------------------------------------------------------------------------
# The server: one coroutine per connection, one request at a time, handled inline on the loop.


class Server:
    def __init__(self, store, max_frame_bytes):
        self.store = store
        self.max_frame_bytes = max_frame_bytes
        self.started = time.monotonic()
        self.connections = 0

    async def handle_connection(self, reader, writer):
        self.connections += 1
        actor = "anonymous"
        try:
            while True:
                try:
                    header = await reader.readexactly(4)
                except asyncio.IncompleteReadError as e:
                    if e.partial:
                        await self.send(writer, None, error=RPCError("invalid_request", "truncated frame"))
                    return
                (length,) = struct.unpack(">I", header)
                if length == 0:
                    await self.send(writer, None, error=RPCError("invalid_request", "zero-length frame"))
                    return
                if length > self.max_frame_bytes:
                    await self.send(writer, None, error=RPCError(
                        "too_large", "frame of %d bytes is over the limit of %d" % (length, self.max_frame_bytes)))
                    return
                try:
                    payload = await reader.readexactly(length)
                except asyncio.IncompleteReadError:
                    await self.send(writer, None, error=RPCError("invalid_request", "truncated frame"))
                    return
                try:
                    message = json.loads(payload.decode("utf-8"))
                except (UnicodeDecodeError, ValueError, RecursionError):
                    await self.send(writer, None, error=RPCError("parse_error", "not JSON"))
                    continue
                if not isinstance(message, dict):
                    await self.send(writer, None, error=RPCError("invalid_request", "not a request object"))
                    continue
                has_id = "id" in message
                rid = message.get("id")
                if has_id and rid is not None and (isinstance(rid, bool) or not isinstance(rid, (int, str))):
                    await self.send(writer, None, error=RPCError("invalid_request", "id must be an integer or a string"))
                    continue
                if message.get("jsonrpc") != "2.0" or not isinstance(message.get("method"), str):
                    if rid is not None:
                        await self.send(writer, rid, error=RPCError("invalid_request", "not a JSON-RPC 2.0 request"))
                    continue
                if rid is None:
                    continue  # a notification: none are defined, so it is ignored
                params = message.get("params")
                if params is None:
                    params = {}
                if not isinstance(params, dict):
                    await self.send(writer, rid, error=RPCError("invalid_params", "params must be an object"))
                    continue
                try:
                    result, actor = await self.dispatch(message["method"], params, actor)
                except RPCError as e:
                    await self.send(writer, rid, error=e)
                    continue
                except sqlite3.OperationalError as e:
                    text = str(e)
                    if "locked" in text or "busy" in text or "readonly" in text:
                        await self.send(writer, rid, error=RPCError("unavailable", "database unavailable"))
                    else:
                        print("naive_server: internal error: %r" % e, file=sys.stderr)
                        await self.send(writer, rid, error=RPCError("internal", "internal error"))
                    continue
                except Exception as e:  # a bug: say so on stderr, answer internal
                    print("naive_server: internal error: %r" % e, file=sys.stderr)
                    await self.send(writer, rid, error=RPCError("internal", "internal error"))
                    continue
                await self.send(writer, rid, result=result)
        except (ConnectionError, OSError):
            pass
        finally:
            self.connections -= 1
            try:
                writer.close()
            except Exception:
                pass

    async def send(self, writer, rid, result=None, error=None):
        if error is not None:
            body = {"jsonrpc": "2.0", "id": rid, "error": error.to_json()}
        else:
            body = {"jsonrpc": "2.0", "id": rid, "result": result}
        data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        writer.write(struct.pack(">I", len(data)) + data)
        await writer.drain()

    async def dispatch(self, method, params, actor):
        store = self.store
        if method == "hello":
            client = params.get("client")
            if not isinstance(client, dict) or not isinstance(client.get("name"), str) or not client["name"]:
                raise RPCError("invalid_params", "client.name is required")
            version = p_int(params, "protocolVersion", 0, 2**31 - 1)
            if version is not None and version > PROTOCOL_VERSION:
                raise RPCError("invalid_params", "protocol version %d is not supported" % version)
            return {
                "server": {"name": SERVER_NAME, "version": SERVER_VERSION}, "protocolVersion": PROTOCOL_VERSION,
                "tenant": TENANT, "admin": True, "authRequired": False, "maxFrameBytes": self.max_frame_bytes,
                "maxInFlight": 1,
            }, client["name"]
        if method == "health":
            return {"status": "ok", "version": SERVER_VERSION,
                    "uptimeSeconds": float(int(time.monotonic() - self.started)),
                    "connections": self.connections, "schemaVersion": "naive"}, actor
        if method == "session.acquire":
            body = store.acquire(params, actor)
            wait_ms = params.get("waitMs") or 0
            deadline = time.monotonic() + wait_ms / 1000.0
            while True:
                kind, value = store.write(body)
                if kind == "granted":
                    return value, actor
                row = value
                if time.monotonic() >= deadline:
                    store.write(store.lease_conflict(row, actor))
                    raise RPCError("lease_held", "the session is in use by %s" % (row["leaseHolder"] or ""),
                                   holder=row["leaseHolder"] or "", expiresAt=fmt_date(row["leaseExpiresAt"]),
                                   sessionId=row["id"])
                await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        if method == "session.complete":
            return store.write(store.complete(params, actor)), actor
        if method == "session.release":
            return store.write(store.release(params, actor)), actor
        if method == "session.get":
            return store.read(store.get(params)), actor
        if method == "session.list":
            return store.read(store.list(params)), actor
        if method == "session.history":
            return store.read(store.history(params)), actor
        if method == "messages.append":
            return store.write(store.messages_append(params)), actor
        if method == "messages.list":
            return store.read(store.messages_list(params)), actor
        raise RPCError("method_not_found", "unknown method %s" % method)


async def main_async(args):
    host, _, port = args.listen.rpartition(":")
    host = host.strip("[]")
    if host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("127."):
        raise SystemExit("naive_server: loopback addresses only")
    store = Store(args.db, args.schema_dir, args.synchronous, args.max_sessions_per_tenant)
    if args.prepopulate:
        prepopulate(store, args.prepopulate, args.prepopulate_format)
    server = Server(store, args.max_frame_bytes)
    srv = await asyncio.start_server(server.handle_connection, host, int(port), backlog=1024)
    for sock in srv.sockets:
        addr = sock.getsockname()
        print("LISTENING tcp %s:%d" % (addr[0], addr[1]), flush=True)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    async with srv:
        await stop
    srv.close()
    try:
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        store.db.close()
    except sqlite3.Error:
        pass


def main():
    parser = argparse.ArgumentParser(description="naive asyncio + sqlite3 baseline for sessiond's benchmark")
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (loopback only); port 0 picks one")
    parser.add_argument("--db", required=True, help="SQLite file (created if missing)")
    parser.add_argument("--schema-dir", default=DEFAULT_SCHEMA_DIR, help="sessiond's schema/ folder")
    parser.add_argument("--synchronous", default="NORMAL", choices=["NORMAL", "FULL", "normal", "full"])
    parser.add_argument("--max-frame-bytes", type=int, default=MAX_FRAME_BYTES)
    parser.add_argument("--max-sessions-per-tenant", type=int, default=MAX_SESSIONS_PER_TENANT,
                        help="sessions before the least recently used idle one is evicted (sessiond's default)")
    parser.add_argument("--prepopulate", type=int, default=0, metavar="N",
                        help="before listening, create N sessions with one completed turn each")
    parser.add_argument("--prepopulate-format", default="bench:%d",
                        help="the keys --prepopulate creates (printf format of 0..N-1; default bench:%%d, "
                             "the keys sessiond-bench's turn workload picks)")
    args = parser.parse_args()
    args.synchronous = args.synchronous.upper()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
