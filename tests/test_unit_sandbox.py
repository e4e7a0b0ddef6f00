"""The stack's daemons run sandboxed: `systemd-analyze security --offline=true` scores
every generated Redis, Sentinel, app server (Starlet, Starman) and PostgreSQL exporter unit 3.0 or less (the bar HAL507 holds
a repo to). Runs in CI; skips elsewhere only when systemd-analyze is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from halgen.lint.rules.sandbox import DAEMONS, MAX_EXPOSURE, Exposure, analyze
from halgen.rehearse.units import service_command

from conftest import GOLDEN, golden_cases, require

UNIT_DIR = "etc/systemd/system"


def _scores(root: Path) -> dict[str, tuple[str, float]]:
    """Each daemon unit of the generated repo at root: the program it runs and its score.
    Scheduled jobs (Type=oneshot, started by timers) are not daemons: HAL413 checks them."""
    scores = {}
    for unit in sorted(root.glob(f"nodes/*/{UNIT_DIR}/*.service")):
        if "Type=oneshot" in unit.read_text().splitlines():
            continue
        node_root = unit.parents[len(UNIT_DIR.split("/"))]
        exposure = analyze(str(node_root), unit.name)
        assert isinstance(exposure, Exposure), f"{unit}: {exposure}"
        program = Path(service_command(unit).argv[0]).name
        scores[unit.relative_to(root).as_posix()] = (program, exposure.score)
    return scores


@pytest.mark.parametrize("case", golden_cases())
def test_daemon_units_score_at_most_3(case: str) -> None:
    require("systemd-analyze")
    scores = _scores(GOLDEN / case / "expected")
    assert {program for program, _ in scores.values()} <= DAEMONS, "a unit HAL507 would not check"
    too_exposed = {unit: score for unit, (_, score) in scores.items() if score > MAX_EXPOSURE}
    assert too_exposed == {}


def test_every_daemon_is_scored() -> None:
    require("systemd-analyze")
    # default-ha runs Starlet (under start_server), minimal Starman.
    programs = {program for case in ("default-ha", "minimal")
                for program, _ in _scores(GOLDEN / case / "expected").values()}
    assert programs == DAEMONS


def test_an_unsandboxed_unit_scores_above_3(tmp_path: Path) -> None:
    """The check can fail: Debian's redis-server unit without its sandbox is well above the bar."""
    require("systemd-analyze")
    units = tmp_path / UNIT_DIR
    units.mkdir(parents=True)
    (units / "plain-redis.service").write_text(
        "[Service]\nType=notify\nUser=redis\nExecStart=/usr/bin/redis-server /etc/redis/redis.conf\n")
    exposure = analyze(str(tmp_path), "plain-redis.service")
    assert isinstance(exposure, Exposure) and exposure.score > MAX_EXPOSURE
