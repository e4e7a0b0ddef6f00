"""Clients of the load balancers as a machine on a private network sees them: run inside
the network's namespace, they print JSON lines for the rehearsal outside to read.

    python -m halgen.rehearse.smokeclient smoke NAME ADDRESS PORT plain|tls HOST CA HEALTH_PATH
    python -m halgen.rehearse.smokeclient load SECONDS THREADS METHOD PATH session|none ENDPOINT...
        (each ENDPOINT is ADDRESS,PORT,plain|tls,HOST,CA)

``smoke`` prints one check per line; ``load`` prints one line per request (wall-clock
start, seconds, status, and the body of a failure or of a write)."""

from __future__ import annotations

import dataclasses
import json
import sys
import time

from halgen.rehearse.http import Endpoint, Load, request
from halgen.rehearse.stack import smoke_one


def _endpoint(address: str, port: str, tls: str, host: str, ca_file: str) -> Endpoint:
    return Endpoint(address, int(port), tls == "tls", host, ca_file)


def smoke(argv: list[str]) -> None:
    name, address, port, tls, host, ca_file, health_path = argv
    for check in smoke_one(name, _endpoint(address, port, tls, host, ca_file), health_path):
        print(json.dumps(dataclasses.asdict(check)), flush=True)


def load(argv: list[str]) -> None:
    seconds, threads, method, path, session, *specs = argv
    endpoints = [_endpoint(*spec.split(",")) for spec in specs]
    cookie = request(endpoints[0], "GET", path).cookie if session == "session" else ""
    # Wall clock, so that the rehearsal can place each request against what it did when.
    offset = time.time() - time.monotonic()
    body = b"drill" if method == "POST" else None
    with Load(endpoints, method=method, path=path, body=body, cookie=cookie, threads=int(threads), timeout=30,
              pause=0.02) as running:
        time.sleep(float(seconds))
        samples = running.stop()
    for s in samples:
        keep = method == "POST" or not s.ok or path == "/session"
        print(json.dumps([round(s.started + offset, 3), round(s.seconds, 4), s.status, s.body[:200] if keep else ""]))


def main(argv: list[str]) -> int:
    commands = {"smoke": smoke, "load": load}
    if not argv or argv[0] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    commands[argv[0]](argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
