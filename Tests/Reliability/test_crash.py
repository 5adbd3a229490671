"""Crash durability: SIGKILL sessiond at random moments under a write-heavy load and prove that every
acknowledged write survived.

Several writer threads, each with its own connection and its own keys, run turns in a loop:
session.acquire -> messages.append -> transcript.append -> session.complete. A write is logged to the
writer's log file only after its response arrived (acknowledged). A killer SIGKILLs sessiond at a
random moment while writes are in flight, keeps it down for a random time (sometimes longer than a
lease, so leases expire meanwhile) and restarts it on the same database; writers reconnect, retry what
was not acknowledged (a transcript chunk is retried byte for byte at the same offset, which the
protocol makes idempotent) and re-acquire leases they lost (waiting for a lease granted by an
unacknowledged acquire to expire, then taking it over).

After the last kill, the crash image is checked with `PRAGMA integrity_check`; then sessiond restarts
and a fresh client checks every acknowledged acquire, message, transcript byte and complete, and that
no lease of a dead holder outlives its expiry; finally sessiond stops and the file is checked again,
opened read-only.
"""
from __future__ import annotations

import base64
import json
import random
import shutil
import signal
import sqlite3
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from reliability import Sessiond, pick, report

from sessiond_client import (  # noqa: E402
    Client,
    ConnectionClosed,
    LeaseHeld,
    NotFound,
    ProtocolError,
    SessiondError,
    ShuttingDown,
    StaleLease,
    Timeout,
    Unavailable,
)

WRITERS = pick(4, 6)
KEYS_PER_WRITER = 2
KILL_CYCLES = pick(4, 24)
LEASE_SECONDS = 2
# An acquire waits for a lease that an unacknowledged acquire may have granted, up to its expiry.
ACQUIRE_WAIT_MS = (LEASE_SECONDS + 3) * 1000
# Writes acknowledged since the last start before the killer may strike (so kills land under load).
MIN_ACKS_BEFORE_KILL = 15
PROGRESS_TIMEOUT = 30.0

RETRYABLE = (ConnectionClosed, Timeout, ProtocolError, ShuttingDown, Unavailable, OSError)
# ShuttingDown: answered between a SIGTERM and the SIGKILL that interrupts the shutdown.


def parse_time(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


class Harness:
    def __init__(self, server: Sessiond):
        self.server = server
        self.addr = server.addr
        self.acks = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.anomalies: List[str] = []

    def acked(self) -> None:
        with self.lock:
            self.acks += 1

    def anomaly(self, text: str) -> None:
        with self.lock:
            self.anomalies.append(text)


class KeyState:
    def __init__(self, writer: int, index: int, sync: str):
        self.key = f"crash:{sync}:w{writer}:k{index}"
        self.cli = f"cli-{sync}-w{writer}-k{index}"
        self.session_id: Optional[str] = None
        self.lease: Optional[dict] = None
        self.step = "acquire"
        self.transcript = b""          # every acknowledged chunk, in order
        self.pending: Optional[bytes] = None  # the chunk being uploaded, retried until acknowledged
        self.completes = 0
        self.last_fence = 0
        self.turn = 0


class Writer(threading.Thread):
    def __init__(self, index: int, harness: Harness, log_path: Path, sync: str):
        super().__init__(name=f"writer-{index}", daemon=True)
        self.index = index
        self.harness = harness
        self.log = open(log_path, "w")
        self.rng = random.Random(1000 + index)
        self.keys = [KeyState(index, k, sync) for k in range(KEYS_PER_WRITER)]
        self.client: Optional[Client] = None
        self.reconnects = 0
        self.errors: Dict[str, int] = {}

    def record(self, entry: dict) -> None:
        self.log.write(json.dumps(entry) + "\n")
        self.log.flush()
        self.harness.acked()

    def connect(self) -> bool:
        while not self.harness.stop.is_set():
            try:
                self.client = Client(self.harness.addr, token="", client_name=f"crash-writer-{self.index}",
                                     timeout=15, connect_timeout=2)
                self.reconnects += 1
                return True
            except RETRYABLE:
                time.sleep(0.02)
        return False

    def drop(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            except Exception:
                pass
        self.client = None

    def run(self) -> None:
        try:
            turn = 0
            while not self.harness.stop.is_set():
                if self.client is None and not self.connect():
                    break
                state = self.keys[turn % len(self.keys)]
                try:
                    self.turn(state)
                    turn += 1
                except RETRYABLE as exc:
                    self.errors[type(exc).__name__] = self.errors.get(type(exc).__name__, 0) + 1
                    self.drop()
                except StaleLease:
                    # The lease expired while sessiond was down (or a complete was applied but not
                    # acknowledged): acquire again and go on with the same pending chunk.
                    self.errors["StaleLease"] = self.errors.get("StaleLease", 0) + 1
                    state.lease = None
                    state.step = "acquire"
                except LeaseHeld:
                    # An unacknowledged acquire holds it and the wait was not long enough: try again.
                    self.errors["LeaseHeld"] = self.errors.get("LeaseHeld", 0) + 1
                except SessiondError as exc:
                    self.harness.anomaly(f"{state.key}: unexpected {exc.reason}: {exc}")
                    self.drop()
                    time.sleep(0.05)
        finally:
            self.drop()
            self.log.close()

    def turn(self, s: KeyState) -> None:
        c = self.client
        if s.step == "acquire":
            r = c.acquire(s.key, holder=f"crash-writer-{self.index}", lease_seconds=LEASE_SECONDS,
                          wait_ms=ACQUIRE_WAIT_MS, timeout=ACQUIRE_WAIT_MS / 1000 + 15)
            session, lease = r["session"], r["lease"]
            if s.session_id is not None and (session["id"] != s.session_id or r["created"]):
                self.harness.anomaly(f"{s.key}: acknowledged session {s.session_id} was replaced by "
                                     f"{session['id']} (created={r['created']})")
            if lease["fence"] <= s.last_fence:
                self.harness.anomaly(f"{s.key}: fence went back from {s.last_fence} to {lease['fence']}")
            if session["turnCount"] < s.completes:
                self.harness.anomaly(f"{s.key}: turnCount {session['turnCount']} < acknowledged {s.completes}")
            stored = r.get("transcript")
            if s.transcript and (not stored or stored.get("cliSessionId") != s.cli
                                 or stored.get("size", 0) < len(s.transcript)):
                self.harness.anomaly(f"{s.key}: acquire reports transcript {stored}, acknowledged "
                                     f"{len(s.transcript)} bytes of {s.cli}")
            s.session_id, s.lease, s.last_fence = session["id"], lease, lease["fence"]
            self.record({"op": "acquire", "key": s.key, "sid": s.session_id, "fence": lease["fence"]})
            s.step = "message"
        proof = {"token": s.lease["token"], "fence": s.lease["fence"]}
        if s.step == "message":
            s.turn += 1
            messages = []
            for role in ("user", "assistant"):
                body = "".join(self.rng.choice("abcdefghij '\"%;\\é☃") for _ in range(self.rng.randint(16, 1500)))
                messages.append({"role": role, "content": f"{s.key} turn {s.turn} {role}: {body}"})
            r = c.messages_append(s.session_id, messages, lease=proof)
            if r["lastSeq"] - r["firstSeq"] != len(messages) - 1:
                self.harness.anomaly(f"{s.key}: messages.append returned {r} for {len(messages)} messages")
            for offset, message in enumerate(messages):
                self.record({"op": "message", "key": s.key, "sid": s.session_id, "seq": r["firstSeq"] + offset,
                             "role": message["role"], "content": message["content"]})
            s.step = "transcript"
        if s.step == "transcript":
            if s.pending is None:
                line = json.dumps({"turn": s.turn, "key": s.key,
                                   "pad": "x" * self.rng.randint(32, 4000)}) + "\n"
                s.pending = line.encode()
            r = c.transcript_append(s.session_id, proof, s.cli, len(s.transcript), s.pending)
            end = len(s.transcript) + len(s.pending)
            if r["size"] != end:
                self.harness.anomaly(f"{s.key}: transcript size {r['size']} after an append ending at {end}")
            s.transcript += s.pending
            self.record({"op": "transcript", "key": s.key, "sid": s.session_id, "cli": s.cli,
                         "offset": end - len(s.pending), "end": end,
                         "data": base64.b64encode(s.pending).decode()})
            s.pending = None
            s.step = "complete"
        if s.step == "complete":
            try:
                r = c.complete(s.session_id, proof, "ok", cli_session_id=s.cli, cost_usd=0.001,
                               input_tokens=10, output_tokens=20)
            except StaleLease:
                # Applied before a crash but not acknowledged, or the lease expired while sessiond
                # was down: either way this complete is not counted.
                s.lease, s.step = None, "acquire"
                return
            s.completes += 1
            if r["session"]["turnCount"] < s.completes:
                self.harness.anomaly(f"{s.key}: turnCount {r['session']['turnCount']} < acknowledged {s.completes}")
            self.record({"op": "complete", "key": s.key, "sid": s.session_id, "fence": proof["fence"],
                         "turnCount": r["session"]["turnCount"]})
            s.lease, s.step = None, "acquire"


def read_logs(paths: List[Path]) -> List[dict]:
    entries = []
    for path in paths:
        with open(path) as handle:
            for line in handle:
                if line.strip():
                    entries.append(json.loads(line))
    return entries


def integrity(path: Path, read_only: bool) -> str:
    uri = f"file:{path}?mode=ro" if read_only else f"file:{path}"
    connection = sqlite3.connect(uri, uri=True, timeout=10)
    try:
        rows = connection.execute("PRAGMA integrity_check").fetchall()
        fk = connection.execute("PRAGMA foreign_key_check").fetchall()
    finally:
        connection.close()
    result = "\n".join(str(row[0]) for row in rows)
    if fk:
        result += f"\nforeign_key_check: {fk[:10]}"
    return result


def copy_crash_image(db: Path, directory: Path) -> Path:
    """Copies the database as SIGKILL left it (main file, -wal, -shm) for an offline check."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / db.name
    for suffix in ("", "-wal", "-shm"):
        source = Path(str(db) + suffix)
        if source.exists():
            shutil.copyfile(source, Path(str(target) + suffix))
    return target


@pytest.mark.parametrize("sync", ["normal", "full"])
def test_every_acknowledged_write_survives_sigkill(tmp_path, sync):
    server = Sessiond(tmp_path / "server", args=["--synchronous", sync, "--sweep-interval", "1"])
    server.start()
    harness = Harness(server)
    writers = [Writer(i, harness, tmp_path / f"writer-{i}.jsonl", sync) for i in range(WRITERS)]
    rng = random.Random(f"killer-{sync}")
    kills = 0
    kills_during_shutdown = 0
    long_downtimes = 0
    started = time.monotonic()
    try:
        for writer in writers:
            writer.start()
        for _ in range(KILL_CYCLES):
            # Strike at a random moment, but only once writes are flowing.
            base = harness.acks
            deadline = time.monotonic() + PROGRESS_TIMEOUT
            while harness.acks - base < MIN_ACKS_BEFORE_KILL:
                assert time.monotonic() < deadline, (
                    f"writers made no progress for {PROGRESS_TIMEOUT}s after restart #{server.starts} "
                    f"(sessiond hung?); anomalies: {harness.anomalies[:5]}\n{server.log_text()[-3000:]}")
                assert server.alive(), f"sessiond exited by itself:\n{server.log_text()[-3000:]}"
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.4))
            assert server.alive(), f"sessiond exited by itself:\n{server.log_text()[-3000:]}"
            if rng.random() < 0.2:
                # SIGTERM first, then SIGKILL in the middle of the graceful shutdown (its WAL checkpoint)
                server.process.send_signal(signal.SIGTERM)
                time.sleep(rng.uniform(0.0, 0.05))
                kills_during_shutdown += 1
            server.kill()
            kills += 1
            # Mostly a quick restart; sometimes long enough for leases to expire while it is down.
            if rng.random() < 0.25:
                downtime = rng.uniform(LEASE_SECONDS, LEASE_SECONDS + 1.0)
                long_downtimes += 1
            else:
                downtime = rng.uniform(0.0, 0.3)
            time.sleep(downtime)
            if kills < KILL_CYCLES:
                server.start()
                harness.addr = server.addr
        # sessiond is down after the last kill. Stop the writers meanwhile: the leases they hold now
        # belong to dead holders.
        harness.stop.set()
        for writer in writers:
            writer.join(timeout=30)
            assert not writer.is_alive(), f"{writer.name} did not stop"
        load_seconds = time.monotonic() - started

        crash_image = copy_crash_image(server.db, tmp_path / "crash-image")
        crash_check = integrity(crash_image, read_only=False)
        assert crash_check == "ok", f"the database as SIGKILL left it fails integrity_check:\n{crash_check}"

        server.start()
        entries = read_logs([tmp_path / f"writer-{i}.jsonl" for i in range(WRITERS)])
        lost, checked = verify(server, entries)
        lease_report = verify_leases(server, writers)

        exit_code = server.stop()
        assert exit_code == 0, f"sessiond exited {exit_code} on SIGTERM:\n{server.log_text()[-3000:]}"
        final_check = integrity(server.db, read_only=True)

        by_op: Dict[str, int] = {}
        for entry in entries:
            by_op[entry["op"]] = by_op.get(entry["op"], 0) + 1
        retries: Dict[str, int] = {}
        for writer in writers:
            for name, count in writer.errors.items():
                retries[name] = retries.get(name, 0) + count
        report(f"crash: synchronous={sync} cycles={kills} acknowledged={checked} lost={len(lost)} "
               f"acquire={by_op.get('acquire', 0)} message={by_op.get('message', 0)} "
               f"transcript={by_op.get('transcript', 0)} complete={by_op.get('complete', 0)} "
               f"long_downtimes={long_downtimes} kills_during_shutdown={kills_during_shutdown} writer_errors={retries} "
               f"dead_holder_leases={lease_report['dead_leases']} reacquired_keys={lease_report['taken_over']} load_seconds={load_seconds:.1f} "
               f"integrity=crash:{crash_check},final:{final_check.splitlines()[0]}")
        assert not harness.anomalies, "writers saw inconsistencies:\n" + "\n".join(harness.anomalies[:30])
        assert not lost, f"{len(lost)} acknowledged writes are missing:\n" + "\n".join(lost[:30])
        assert final_check == "ok", final_check
        assert kills >= KILL_CYCLES
        assert by_op.get("complete", 0) >= kills, "too few turns completed for the test to mean anything"
    finally:
        harness.stop.set()
        for writer in writers:
            writer.join(timeout=5)
        server.stop(timeout=10)


def verify(server: Sessiond, entries: List[dict]):
    """Every acknowledged write is in the registry. Returns (lost descriptions, number checked)."""
    lost: List[str] = []
    keys: Dict[str, dict] = {}
    for entry in entries:
        k = keys.setdefault(entry["key"], {"sid": entry["sid"], "completes": 0, "messages": {}, "chunks": []})
        if entry["sid"] != k["sid"]:
            lost.append(f"{entry['key']}: acknowledged under two session ids {k['sid']} and {entry['sid']}")
        if entry["op"] == "complete":
            k["completes"] += 1
        elif entry["op"] == "message":
            k["messages"][entry["seq"]] = (entry["role"], entry["content"])
        elif entry["op"] == "transcript":
            k["chunks"].append(entry)
    with Client(server.addr, token="", client_name="crash-verifier", timeout=60) as client:
        for key, k in sorted(keys.items()):
            try:
                session = client.get(key=key)["session"]
            except NotFound:
                lost.append(f"{key}: the session {k['sid']} is gone")
                continue
            if session["id"] != k["sid"]:
                lost.append(f"{key}: session id {session['id']} != acknowledged {k['sid']}")
                continue
            if session["turnCount"] < k["completes"]:
                lost.append(f"{key}: turnCount {session['turnCount']} < {k['completes']} acknowledged completes")
            stored: Dict[int, tuple] = {}
            after = 0
            while True:
                page = client.messages_list(k["sid"], after_seq=after, limit=1000)
                for message in page["messages"]:
                    stored[message["seq"]] = (message["role"], message["content"])
                after = page.get("nextAfterSeq") or 0
                if not page["messages"] or not page.get("nextAfterSeq"):
                    break
            for seq, expected in k["messages"].items():
                if stored.get(seq) != expected:
                    lost.append(f"{key}: message seq {seq} is {stored.get(seq)!r:.80} not {expected!r:.80}")
            if k["chunks"]:
                cli = k["chunks"][0]["cli"]
                expected_bytes = b"".join(base64.b64decode(c["data"]) for c in k["chunks"])
                if len(expected_bytes) != k["chunks"][-1]["end"]:
                    lost.append(f"{key}: acknowledged chunks are not contiguous (harness bug?)")
                data = client.transcript_read_all(k["sid"], cli_session_id=cli)
                if len(data) < len(expected_bytes):
                    lost.append(f"{key}: transcript has {len(data)} bytes < acknowledged end {len(expected_bytes)}")
                if data[:len(expected_bytes)] != expected_bytes:
                    lost.append(f"{key}: transcript bytes differ from the acknowledged ones")
    return lost, len(entries)


def verify_leases(server: Sessiond, writers: List[Writer]) -> dict:
    """No lease of a dead holder outlives its expiry: every lease expires at most LEASE_SECONDS after
    it was granted, and once that has passed every key can be acquired at once (taken over)."""
    taken_over = 0
    dead_leases = 0
    with Client(server.addr, token="", client_name="crash-lease-checker", timeout=30) as client:
        latest = 0.0
        now = time.time()
        for writer in writers:
            for state in writer.keys:
                try:
                    session = client.get(key=state.key)["session"]
                except NotFound:
                    continue
                lease = session.get("lease")
                if lease:
                    dead_leases += 1
                    expires = parse_time(lease["expiresAt"])
                    assert expires <= now + LEASE_SECONDS + 1, (
                        f"{state.key}: lease of {lease['holder']} expires at {lease['expiresAt']}, more than "
                        f"{LEASE_SECONDS}s from now")
                    latest = max(latest, expires)
        time.sleep(max(0.0, latest - time.time()) + 1.0)
        for writer in writers:
            for state in writer.keys:
                if state.session_id is None:
                    continue
                r = client.acquire(state.key, holder="crash-lease-checker", wait_ms=0, lease_seconds=5)
                assert r["session"]["id"] == state.session_id
                assert r["lease"]["fence"] > state.last_fence
                taken_over += 1
                client.release(r["session"]["id"], r["lease"])
        # takeovers are audited
        if latest:
            audited = (client.audit_list(action="lease.takeover", limit=1000)["entries"]
                       + client.audit_list(action="lease.expire", limit=1000)["entries"])
            assert audited, "neither lease.takeover nor lease.expire was audited for the dead holders' leases"
    return {"taken_over": taken_over, "dead_leases": dead_leases}
