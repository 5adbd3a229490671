"""Storage faults: a full disk while serving, and databases sessiond must refuse at start-up.

- Full disk (a 4 MB tmpfs; skipped where mounting is not permitted): writes fail with `storage_full`,
  acknowledged writes stay, reads keep working, nothing is corrupted, and writes work again once
  space returns. A start on a full disk fails with a clear message.
- A read-only database (read-only file system; file mode 0444 for an unprivileged user), a database
  locked by another process, a corrupt file and a schema newer than the binary: each makes sessiond
  exit non-zero quickly with a clear message, without serving and without replacing the file.
"""
from __future__ import annotations

import hashlib
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List

import pytest

from reliability import Sessiond, StartupFailed, assert_serving, report

from sessiond_client import Client, SessiondError  # noqa: E402

NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (to chown to an unprivileged user)")
START_LIMIT = 15.0  # seconds; the busy timeout for a locked database is 5 s


# -- helpers --------------------------------------------------------------------------------------


class Tmpfs:
    """A small tmpfs mounted for one test; skips the test when mounting is not permitted."""

    def __init__(self, path: Path, size: str = "4m"):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")

    def remount_read_only(self) -> None:
        subprocess.run(["mount", "-o", "remount,ro", str(self.path)], check=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


@pytest.fixture
def tmpfs(tmp_path):
    mounted: List[Tmpfs] = []

    def make(name: str = "mnt", size: str = "4m") -> Tmpfs:
        fs = Tmpfs(tmp_path / name, size)
        mounted.append(fs)
        return fs

    yield make
    for fs in mounted:
        fs.unmount()


def fill(directory: Path, name: str = "filler", leave: int = 0) -> Path:
    """Writes a file until the file system has at most ``leave`` bytes free; returns it."""
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for size in (1 << 20, 1 << 16, 1 << 12, 1 << 9):
            block = b"\0" * size
            try:
                while True:
                    stat = os.statvfs(directory)
                    if stat.f_bavail * stat.f_frsize - size < leave:
                        break
                    os.write(fd, block)
            except OSError:
                pass
    finally:
        os.close(fd)
    return path


def seed_session(client, key: str, message: str, transcript: bytes) -> str:
    """One completed turn on `key` with a message and a transcript (CLI id `cli-seed`); the session id."""
    acquired = client.acquire(key)
    sid = acquired["session"]["id"]
    client.messages_append(sid, [("user", message)], lease=acquired["lease"])
    client.transcript_append(sid, acquired["lease"], "cli-seed", 0, transcript)
    client.complete(sid, acquired["lease"], "ok", cli_session_id="cli-seed")
    return sid


def seeded_database(directory: Path) -> Path:
    """A registry with one session, one message and a transcript, cleanly stopped (WAL folded in)."""
    server = Sessiond(directory / "seed", db=directory / "registry.sqlite")
    server.start()
    with server.client() as client:
        seed_session(client, "seed:one", "seeded", b"seed transcript\n")
    assert server.stop() == 0
    shutil.rmtree(directory / "seed")
    checkpoint(server.db)
    return server.db


def checkpoint(db: Path) -> None:
    """Folds the WAL into the main file and removes -wal/-shm, so the main file holds everything."""
    connection = sqlite3.connect(db)
    connection.execute("PRAGMA journal_mode=DELETE")
    connection.execute("PRAGMA journal_mode=WAL")
    connection.close()
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)


def fingerprint(path: Path):
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest()


def logical_dump(db: Path) -> List[str]:
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return list(connection.iterdump())
    finally:
        connection.close()


@pytest.fixture
def open_dir():
    """A directory an unprivileged user can reach (pytest's tmp_path sits under a 0700 directory)."""
    import tempfile
    path = Path(tempfile.mkdtemp(prefix="sessiond-reliability-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    subprocess.run(["chmod", "-R", "u+rwX", str(path)], capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


def as_nobody() -> None:  # pragma: no cover - runs in the child
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def refused_start(server: Sessiond) -> StartupFailed:
    """Starts sessiond and expects it to refuse: exit non-zero within START_LIMIT, no LISTENING, no
    crash (a signal or a Swift runtime trap)."""
    try:
        server.start(timeout=START_LIMIT + 5)
    except StartupFailed as failure:
        assert failure.returncode is not None and failure.returncode > 0, (
            f"sessiond did not exit with an error code: {failure.returncode}\n{failure.stderr}")
        assert failure.elapsed < START_LIMIT, f"took {failure.elapsed:.1f}s to refuse"
        for crash in ("Fatal error", "Segmentation", "Illegal instruction", "Current stack trace", "ServiceGroupError"):
            assert crash not in failure.stderr, failure.stderr
        return failure
    server.stop()
    raise AssertionError(f"sessiond started on a database it must refuse ({server.db})")


def assert_said(failure: StartupFailed, *words: str) -> None:
    text = failure.stderr.lower()
    assert all(word.lower() in text for word in words), f"stderr does not say {words}: {failure.stderr!r}"


# -- full disk ------------------------------------------------------------------------------------


def test_full_disk_while_serving(tmpfs, tmp_path):
    """Writers keep writing while a filler eats the last free space: every write either is
    acknowledged or fails with storage_full; reads keep working throughout; acknowledged writes
    survive; freeing space brings writes back; the file passes integrity_check."""
    fs = tmpfs()
    server = Sessiond(tmp_path / "logs", db=fs.path / "registry.sqlite")
    server.start()
    try:
        with server.client() as client:
            seed_id = seed_session(client, "full:seed", "before the disk filled", b"seed line\n")

        acked: List[tuple] = []
        reasons: Dict[str, int] = {}
        read_failures: List[str] = []
        stop = threading.Event()
        lock = threading.Lock()

        def writer(index: int) -> None:
            rng = random.Random(index)
            with server.client(timeout=30) as client:
                n = 0
                while not stop.is_set():
                    n += 1
                    key = f"full:w{index}:{n}"
                    try:
                        acquired = client.acquire(key, metadata={"pad": "m" * rng.randint(0, 4000)})
                    except SessiondError as exc:
                        with lock:
                            reasons[exc.reason] = reasons.get(exc.reason, 0) + 1
                        time.sleep(0.01)
                        continue
                    sid, lease = acquired["session"]["id"], acquired["lease"]
                    with lock:
                        acked.append(("session", key, sid))
                    content = f"{key} " + "x" * rng.randint(100, 30000)
                    try:
                        first = client.messages_append(sid, [("user", content)], lease=lease)["firstSeq"]
                        with lock:
                            acked.append(("message", sid, first, content))
                        data = os.urandom(rng.randint(100, 20000))
                        client.transcript_append(sid, lease, "cli", 0, data)
                        with lock:
                            acked.append(("transcript", sid, data))
                    except SessiondError as exc:
                        with lock:
                            reasons[exc.reason] = reasons.get(exc.reason, 0) + 1
                    try:
                        client.release(sid, lease)
                    except SessiondError as exc:
                        with lock:
                            reasons[exc.reason] = reasons.get(exc.reason, 0) + 1

        def reader() -> None:
            with server.client(timeout=30) as client:
                while not stop.is_set():
                    try:
                        assert client.get(seed_id)["session"]["turnCount"] == 1
                        assert client.messages_list(seed_id)["messages"][0]["content"] == "before the disk filled"
                        assert client.transcript_read_all(seed_id) == b"seed line\n"
                        client.stats()
                        client.list(limit=20)
                    except Exception as exc:  # noqa: BLE001 - collected
                        read_failures.append(repr(exc))
                    time.sleep(0.02)

        # Something else takes most of the disk; sessiond's writes take the rest.
        filler = fill(fs.path, leave=1536 * 1024)
        threads = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(2)]
        threads.append(threading.Thread(target=reader, daemon=True))
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with lock:
                if reasons.get("storage_full", 0) + reasons.get("unavailable", 0) >= 20:
                    break
            time.sleep(0.05)
        full_for = time.monotonic()
        time.sleep(1.0)  # keep writing (and reading) into the full disk
        stop.set()
        for thread in threads:
            thread.join(30)
        assert server.alive(), server.log_text()[-3000:]
        refusals = dict(reasons)
        assert refusals.get("storage_full", 0) > 0, f"no storage_full while the disk was full: {refusals}"
        assert set(refusals) <= {"storage_full", "unavailable"}, f"writes failed with {refusals}"
        assert not read_failures, read_failures[:5]

        # Space returns: writes work again at once.
        filler.unlink()
        with server.client() as client:
            resumed = None
            after_errors: List[str] = []
            for attempt in range(50):
                try:
                    acquired = client.acquire(f"full:after{attempt}")
                    client.messages_append(acquired["session"]["id"], [("user", "after")], lease=acquired["lease"])
                    client.release(acquired["session"]["id"], acquired["lease"])
                    resumed = time.monotonic() - full_for
                    break
                except SessiondError as exc:
                    after_errors.append(f"{exc.reason}: {exc.message}")
                    time.sleep(0.1)
            assert resumed is not None, (
                f"writes did not resume after space was freed: {after_errors[:3]} ... {after_errors[-1:]}\n"
                f"df: {subprocess.run(['df', '-k', str(fs.path)], capture_output=True, text=True).stdout}\n"
                f"{sorted((p.name, p.stat().st_size) for p in fs.path.iterdir())}\n{server.log_text()[-3000:]}")
            lost = verify_acked(client, acked)
        assert server.stop() == 0
        check = sqlite3.connect(f"file:{server.db}?mode=ro", uri=True)
        integrity = check.execute("PRAGMA integrity_check").fetchone()[0]
        check.close()
        # and again after a restart
        server.start()
        with server.client() as client:
            lost_after_restart = verify_acked(client, acked)
        report(f"storage: case=full-disk acknowledged={len(acked)} refused={refusals} lost={len(lost)} "
               f"lost_after_restart={len(lost_after_restart)} read_failures={len(read_failures)} "
               f"integrity={integrity}")
        assert integrity == "ok"
        assert not lost, lost[:10]
        assert not lost_after_restart, lost_after_restart[:10]
        assert_serving(server)
    finally:
        server.stop()


def verify_acked(client: Client, acked: List[tuple]) -> List[str]:
    lost = []
    for entry in acked:
        if entry[0] == "session":
            _, key, sid = entry
            try:
                if client.get(key=key)["session"]["id"] != sid:
                    lost.append(f"session {key}")
            except SessiondError:
                lost.append(f"session {key}")
        elif entry[0] == "message":
            _, sid, seq, content = entry
            got = client.messages_list(sid, after_seq=seq - 1, limit=1)["messages"]
            if not got or got[0]["seq"] != seq or got[0]["content"] != content:
                lost.append(f"message {sid}#{seq}")
        else:
            _, sid, data = entry
            if client.transcript_read_all(sid, cli_session_id="cli")[:len(data)] != data:
                lost.append(f"transcript {sid}")
    return lost


def test_start_on_a_full_disk_is_a_clear_error(tmpfs, tmp_path):
    fs = tmpfs()
    db = seeded_database(fs.path)
    before = logical_dump(db)
    filler = fill(fs.path)
    failure = refused_start(Sessiond(tmp_path / "logs", db=db))
    assert_said(failure, "full")
    filler.unlink()
    assert logical_dump(db) == before
    report(f"storage: case=start-on-full-disk exit={failure.returncode} seconds={failure.elapsed:.1f} "
           f"stderr={failure.stderr.strip().splitlines()[-1]!r}")


def test_full_temporary_directory_does_not_fail_writes(tmpfs, tmp_path):
    """SQLite puts a statement journal that outgrows 64 KiB into a temporary file (SQLITE_TMPDIR, TMPDIR,
    else /var/tmp). sessiond keeps it in memory, so a full temporary directory cannot fail a write while
    the database's own disk has room. Deleting a session with about 60 pages of messages journals more than
    64 KiB in one operation; so does a batch of concurrent turns."""
    temporary = tmpfs("tmp", "1m")
    fill(temporary.path)
    server = Sessiond(tmp_path / "logs", db=tmp_path / "registry.sqlite", env={"SQLITE_TMPDIR": str(temporary.path)})
    server.start()
    try:
        with server.client() as client:
            keep = client.acquire("tmpdir:keep")
            doomed = client.acquire("tmpdir:doomed")
            for turn in range(6):
                for acquired in (keep, doomed):
                    client.messages_append(acquired["session"]["id"],
                                           [("user", f"{turn}:{i}:" + "x" * 3000) for i in range(10)])
            assert client.delete(doomed["session"]["id"], force=True)["deleted"] is True
            assert client.list()["sessions"][0]["key"] == "tmpdir:keep"
            assert len(client.messages_list(keep["session"]["id"], limit=1000)["messages"]) == 60

        failures: List[str] = []

        def turns(index: int) -> None:
            with server.client(timeout=30) as client:
                for n in range(40):
                    try:
                        acquired = client.acquire(f"tmpdir:w{index}:{n % 5}")
                        client.complete(acquired["session"]["id"], acquired["lease"], "ok",
                                        cli_session_id=f"cli-{index}-{n}", messages=[("user", "y" * 2000)])
                    except SessiondError as error:
                        failures.append(f"{error.code}: {error}")

        threads = [threading.Thread(target=turns, args=(index,)) for index in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert failures == []
        assert "disk is full" not in server.log_text()
        report(f"storage: case=full-temporary-directory turns={16 * 40} failures={len(failures)}")
    finally:
        server.stop()


# -- databases sessiond must refuse ---------------------------------------------------------------


def _read_only_file_system(tmpfs, tmp_path, keep_wal_files: bool) -> StartupFailed:
    fs = tmpfs()
    db = seeded_database(fs.path)
    if keep_wal_files:
        # as a clean stop of sessiond leaves them
        server = Sessiond(tmp_path / "pre", db=db)
        server.start()
        assert server.stop() == 0
    before = fingerprint(db)
    fs.remount_read_only()
    failure = refused_start(Sessiond(tmp_path / "logs", db=db))
    assert fingerprint(db) == before
    report(f"storage: case=read-only-filesystem{'-with-wal' if keep_wal_files else ''} exit={failure.returncode} "
           f"seconds={failure.elapsed:.1f} stderr={failure.stderr.strip().splitlines()[-1]!r}")
    return failure


def test_read_only_file_system(tmpfs, tmp_path):
    """The file system is mounted read-only after a clean stop (-wal and -shm still there)."""
    failure = _read_only_file_system(tmpfs, tmp_path, keep_wal_files=True)
    assert_said(failure, "read-only")


def test_read_only_file_system_without_wal_files(tmpfs, tmp_path):
    failure = _read_only_file_system(tmpfs, tmp_path, keep_wal_files=False)
    assert_said(failure, "read-only")


@needs_root
@pytest.mark.parametrize("directory_mode", [0o777, 0o555], ids=["dir-writable", "dir-read-only"])
def test_read_only_database_file(open_dir, directory_mode):
    """Mode 0444 on the file, for an unprivileged user (root ignores permission bits: as root sessiond
    simply opens the file read-write)."""
    tmp_path = open_dir
    directory = tmp_path / "db"
    directory.mkdir()
    db = seeded_database(directory)
    for path in (directory, db):
        os.chown(path, NOBODY, NOBODY)
    os.chmod(db, 0o444)
    os.chmod(directory, directory_mode)
    logs = tmp_path / "logs"
    logs.mkdir()
    os.chmod(logs, 0o777)
    before = fingerprint(db)
    failure = refused_start(Sessiond(logs, db=db, preexec=as_nobody))
    assert_said(failure, "read-only")
    assert fingerprint(db) == before
    report(f"storage: case=read-only-file-{oct(directory_mode)} exit={failure.returncode} "
           f"seconds={failure.elapsed:.1f} stderr={failure.stderr.strip().splitlines()[-1]!r}")


LOCK_HOLDER = r"""
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=1)
if sys.argv[2] != "keep":
    connection.execute("PRAGMA journal_mode=" + sys.argv[2])
connection.execute("BEGIN EXCLUSIVE")
print("LOCKED", flush=True)
sys.stdin.read()   # until the test closes our stdin
connection.execute("ROLLBACK")
"""


@pytest.mark.parametrize("journal", ["keep", "DELETE"], ids=["wal", "rollback-journal"])
def test_database_locked_by_another_process(tmp_path, journal):
    """Another process holds BEGIN EXCLUSIVE on the database (in a separate process: closing any
    descriptor of the file in the locking process would drop its POSIX locks)."""
    directory = tmp_path / "db"
    directory.mkdir()
    db = seeded_database(directory)
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(db), journal], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "LOCKED"
        before = fingerprint(db)
        failure = refused_start(Sessiond(tmp_path / "logs", db=db))
        assert_said(failure, "locked")
        assert fingerprint(db) == before
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    report(f"storage: case=locked-{journal} exit={failure.returncode} seconds={failure.elapsed:.1f} "
           f"stderr={failure.stderr.strip().splitlines()[-1]!r}")
    # Once the other process lets go, sessiond starts and the data is there.
    server = Sessiond(tmp_path / "logs2", db=db)
    server.start()
    try:
        with server.client() as client:
            assert client.get(key="seed:one")["session"]["turnCount"] == 1
    finally:
        server.stop()


def _random_bytes(db: Path) -> None:
    db.write_bytes(random.Random(1).randbytes(65536))


def _garbage_after_header(db: Path) -> None:
    data = bytearray(db.read_bytes())
    data[100:] = random.Random(2).randbytes(len(data) - 100)
    db.write_bytes(bytes(data))


def _garbage_pages(db: Path) -> None:
    data = bytearray(db.read_bytes())
    data[4096:] = random.Random(3).randbytes(len(data) - 4096)
    db.write_bytes(bytes(data))


def _truncated(db: Path) -> None:
    data = db.read_bytes()
    db.write_bytes(data[:len(data) // 2 + 100])


@pytest.mark.parametrize("corrupt", [_random_bytes, _garbage_after_header, _garbage_pages, _truncated],
                         ids=["random-bytes", "garbage-after-header", "garbage-pages", "truncated"])
def test_corrupt_file(tmp_path, corrupt):
    directory = tmp_path / "db"
    directory.mkdir()
    db = seeded_database(directory)
    corrupt(db)
    before = fingerprint(db)
    files_before = sorted(os.listdir(directory))
    failure = refused_start(Sessiond(tmp_path / "logs", db=db))
    assert_said(failure, "not a sessiond database")
    assert fingerprint(db) == before, "sessiond modified the corrupt file"
    assert sorted(p for p in os.listdir(directory) if not p.endswith(("-wal", "-shm"))) == files_before
    report(f"storage: case=corrupt-{corrupt.__name__.strip('_')} exit={failure.returncode} "
           f"seconds={failure.elapsed:.1f} stderr={failure.stderr.strip().splitlines()[-1]!r}")


def test_corrupt_data_page(tmp_path):
    """One damaged page of message data (the schema is intact, so start-up cannot notice without a
    full integrity_check): sessiond serves everything else and answers `unavailable` (never
    `internal`, never a crash) for the damaged data."""
    directory = tmp_path / "db"
    directory.mkdir()
    server = Sessiond(directory, db=directory / "registry.sqlite")
    server.start()
    with server.client() as client:
        acquired = client.acquire("corrupt:big")
        sid = acquired["session"]["id"]
        for i in range(40):
            client.messages_append(sid, [("user", f"m{i} " + "x" * 3000)], lease=acquired["lease"])
        client.release(sid, acquired["lease"])
        acquired = client.acquire("corrupt:small")
        client.release(acquired["session"]["id"], acquired["lease"])
    assert server.stop() == 0
    checkpoint(server.db)
    connection = sqlite3.connect(server.db)
    try:
        pages = [row[0] for row in connection.execute(
            "SELECT pageno FROM dbstat WHERE name = 'message' AND pagetype = 'leaf' ORDER BY pageno")]
    except sqlite3.OperationalError:
        pytest.skip("this sqlite3 module has no dbstat")
    finally:
        connection.close()
    page = pages[len(pages) // 2]
    data = bytearray(server.db.read_bytes())
    data[(page - 1) * 4096 + 100:page * 4096] = random.Random(5).randbytes(4096 - 100)
    server.db.write_bytes(bytes(data))
    try:
        server.start()
    except StartupFailed as failure:  # refusing is fine too, with the right words
        assert_said(failure, "not a sessiond database")
        return
    try:
        with server.client() as client:
            assert client.get(key="corrupt:small")["session"]["key"] == "corrupt:small"
            with pytest.raises(SessiondError) as raised:
                client.messages_list(sid, limit=100)
            assert raised.value.reason == "unavailable", raised.value
            acquired = client.acquire("corrupt:new")
            client.release(acquired["session"]["id"], acquired["lease"])
        assert server.alive()
        report(f"storage: case=corrupt-data-page served=yes damaged_read={raised.value.reason}")
    finally:
        server.stop()


def _future_schema(tmp_path: Path) -> Path:
    directory = tmp_path / "db"
    directory.mkdir()
    db = seeded_database(directory)
    connection = sqlite3.connect(db)
    connection.execute("INSERT INTO grdb_migrations VALUES ('9999_future')")
    connection.commit()
    connection.close()
    checkpoint(db)
    return db


def test_newer_schema(tmp_path):
    db = _future_schema(tmp_path)
    before = logical_dump(db)
    failure = refused_start(Sessiond(tmp_path / "logs", db=db))
    assert_said(failure, "newer schema", "9999_future")
    assert logical_dump(db) == before, "the refused database's content changed"
    report(f"storage: case=newer-schema exit={failure.returncode} seconds={failure.elapsed:.1f} "
           f"stderr={failure.stderr.strip().splitlines()[-1]!r}")


def test_newer_schema_file_is_not_written(tmp_path):
    db = _future_schema(tmp_path)
    before = fingerprint(db)
    refused_start(Sessiond(tmp_path / "logs", db=db))
    assert fingerprint(db) == before, "sessiond wrote to a database it refused"


def test_foreign_sqlite_database_is_refused(tmp_path):
    db = tmp_path / "someone-elses.sqlite"
    connection = sqlite3.connect(db)
    connection.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
    connection.execute("INSERT INTO invoices VALUES (1, 9.5)")
    connection.commit()
    connection.close()
    before = fingerprint(db)
    failure = refused_start(Sessiond(tmp_path / "logs", db=db))
    assert_said(failure, "not a sessiond database")
    assert fingerprint(db) == before


# -- running as an unprivileged user --------------------------------------------------------------


@needs_root
def test_sessiond_serves_as_an_unprivileged_user(open_dir):
    directory = open_dir / "db"
    directory.mkdir()
    os.chown(directory, NOBODY, NOBODY)
    server = Sessiond(directory, preexec=as_nobody)
    server.start()
    try:
        assert_serving(server)
        assert server.alive(), server.log_text()[-2000:]
    finally:
        server.stop()
