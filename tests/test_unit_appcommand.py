"""lint.facts reads an app server unit's ExecStart= as the server reads its options:
Starman's --listen/--workers, Starlet's under Server::Starter or plackup alone."""

from __future__ import annotations

import shlex

import pytest

from halgen.lint.facts import app_command


def _parse(command: str):  # type: ignore[no-untyped-def]
    return app_command("nodes/app1/etc/systemd/system/x-app-5000.service", 7, shlex.split(command))


def test_starman_listen_workers_and_keepalive() -> None:
    c = _parse("/usr/bin/starman --listen 10.0.0.40:5000 --workers 5 --keepalive-timeout 5 -E deployment app.psgi")
    assert (c.server, c.listens, c.workers, c.keepalive_timeout, c.title) == (
        "starman", ("10.0.0.40:5000",), "5", "5", "Starman")


def test_starlet_under_start_server_listens_where_start_server_binds() -> None:
    c = _parse("/usr/bin/start_server --port=10.0.0.40:5000 --dir=/srv/x/current -- /usr/bin/plackup -s Starlet "
               "--max-workers 7 --keepalive-timeout=4 -E deployment /srv/x/current/app.psgi")
    assert (c.server, c.listens, c.workers, c.keepalive_timeout) == ("starlet", ("10.0.0.40:5000",), "7", "4")


@pytest.mark.parametrize("command", [
    "plackup -s Starlet --listen 10.0.0.41:5001 app.psgi",
    "plackup --server=starlet --host 10.0.0.41 --port 5001 app.psgi",
])
def test_starlet_alone(command: str) -> None:
    c = _parse(command)
    assert (c.server, c.listens) == ("starlet", ("10.0.0.41:5001",))


def test_absent_options_are_the_servers_own_defaults() -> None:
    assert (_parse("starman --listen 10.0.0.40:5000 app.psgi").workers,
            _parse("starman --listen 10.0.0.40:5000 app.psgi").keepalive_timeout) == ("5", "1")
    starlet = _parse("start_server --port=10.0.0.40:5000 -- plackup -s Starlet app.psgi")
    assert (starlet.workers, starlet.keepalive_timeout) == ("10", "2")


def test_the_last_of_a_repeated_option_wins() -> None:
    assert _parse("starman --workers 5 --listen 10.0.0.40:5000 --workers 9 app.psgi").workers == "9"


@pytest.mark.parametrize("command", ["plackup -s Twiggy app.psgi", "start_server --port=5000 -- hypnotoad app",
                                     "/usr/bin/perl app.pl"])
def test_other_programs_are_not_app_servers(command: str) -> None:
    assert _parse(command) is None
