"""pytest fixtures for the reliability harnesses; the helpers are in reliability.py.

Mode: ``SESSIOND_RELIABILITY=full`` runs the full (long) mode; anything else runs the short mode,
which is what every CI run executes.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reliability import Sessiond  # noqa: E402


@pytest.fixture
def server_factory(tmp_path):
    """Makes Sessiond objects under tmp_path and stops every one of them at teardown."""
    made: List[Sessiond] = []

    def make(*args, directory: Optional[Path] = None, start: bool = True, **kwargs) -> Sessiond:
        server = Sessiond(directory or tmp_path / f"s{len(made)}", args=args, **kwargs)
        made.append(server)
        if start:
            server.start()
        return server

    yield make
    for server in made:
        try:
            server.stop(timeout=10)
        except Exception:
            pass


@pytest.fixture(scope="session", autouse=True)
def _announce_mode():
    from reliability import MODE, report, sessiond_bin
    report(f"reliability: mode={MODE} binary={sessiond_bin()}")
    yield
