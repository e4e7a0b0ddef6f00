"""The smoke test as a client on a private network sees it: run inside the network's
namespace (``python -m halgen.rehearse.smokeclient NAME URL-PARTS...``), it prints the
checks as JSON lines for the rehearsal outside to read."""

from __future__ import annotations

import dataclasses
import json
import sys

from halgen.rehearse.http import Endpoint
from halgen.rehearse.stack import smoke_one


def main(argv: list[str]) -> int:
    name, address, port, tls, host, ca_file, health_path = argv
    endpoint = Endpoint(address, int(port), tls == "tls", host, ca_file)
    for check in smoke_one(name, endpoint, health_path):
        print(json.dumps(dataclasses.asdict(check)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
