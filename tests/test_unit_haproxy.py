"""halgen.formats.haproxy (the lint's reader of haproxy.cfg) and the balancer sizing in the model."""

from __future__ import annotations

import pytest

from halgen.compiler import pipeline
from halgen.formats import haproxy

SAMPLE = """# a comment
global
    maxconn 4096   # trailing comment
defaults
    timeout client 65s
frontend app
    bind 127.0.0.1:8404
    default_backend starman
backend starman
    default-server check maxconn 4 pool-purge-delay 4s
    server app1-5000 10.0.0.40:5000 weight 1
    server app2-5000 10.0.0.41:5000 weight 2
"""


def test_sections_keep_their_lines_and_numbers() -> None:
    sections, errors = haproxy.parse(SAMPLE)
    assert errors == []
    assert [(s.kind, s.name, s.line) for s in sections] == [
        ("global", "", 2), ("defaults", "", 4), ("frontend", "app", 6), ("backend", "starman", 9)]
    assert sections[0].last("maxconn").args == ("4096",), "a trailing comment is not an argument"
    backend = sections[-1]
    assert [(s.args[1], s.line) for s in backend.all("server")] == [("10.0.0.40:5000", 11), ("10.0.0.41:5000", 12)]
    assert sections[1].option("timeout", "client").args == ("client", "65s")


def test_a_keyword_outside_any_section_is_an_error() -> None:
    assert haproxy.parse("maxconn 10\nglobal\n")[1] == [(1, "'maxconn' outside any section")]


@pytest.mark.parametrize(("value", "seconds"), [("4s", 4.0), ("500ms", 0.5), ("2m", 120.0), ("1500", 1.5),
                                                 ("soon", None), ("", None)])
def test_times_are_read_as_haproxy_reads_them(value: str, seconds: float | None) -> None:
    assert haproxy.seconds(value) == seconds


@pytest.mark.parametrize(("answers", "maxconn", "pool"), [
    ({}, 4, 2),  # 5 workers, 2 load balancers: 4 at a time each, 2 idle each leave a worker
    ({"app_workers": 1}, 1, 1),
    ({"app_workers": 9, "lb_count": 1}, 8, 8),
])
def test_each_load_balancer_leaves_an_app_server_worker_free(answers: dict, maxconn: int, pool: int) -> None:
    stack = pipeline.stack_from(answers)
    assert (stack.balancer_maxconn, stack.balancer_pool_max) == (maxconn, pool)
    assert stack.balancer_listen(stack.lbs[0]) == "127.0.0.1:8404"
