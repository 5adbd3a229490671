"""Replays every Tests/Fixtures/frames/*.json scenario against a fresh sessiond (raw socket)."""

from __future__ import annotations

import json

import pytest
from conftest import REPO, SessiondProcess
from golden import replay

FRAMES = REPO / "Tests" / "Fixtures" / "frames"

if not FRAMES.is_dir():
    pytest.skip(f"no golden fixtures yet ({FRAMES} is missing)", allow_module_level=True)

SCENARIOS = sorted(FRAMES.glob("*.json"))


def test_fixture_directory_has_scenarios():
    assert SCENARIOS, f"{FRAMES} exists but holds no *.json scenario"


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_golden_scenario(path):
    scenario = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(scenario.get("steps"), list) and scenario["steps"], f"{path.name}: no steps"
    proc = SessiondProcess()  # every scenario starts from an empty registry
    try:
        host, port = proc.host_port
        replay(scenario, host, port)
    finally:
        proc.cleanup()
