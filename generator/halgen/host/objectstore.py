"""An S3-compatible server standing in for Linode Object Storage: moto's S3 server behind
nginx for TLS (pgBackRest speaks S3 over TLS only, and moto closes the connections
pgBackRest keeps alive), with a throwaway self-signed certificate for the endpoint's name
that the nodes are made to trust, and the stack's (empty) backup bucket.

moto is a test dependency of halgen (``pip install 'halgen[test]'``), not a runtime one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from halgen.host import tlsfront
from halgen.host.processes import HostError, Processes, wait_for_port_from
from halgen.host.tls import key_pair

BACKEND_PORT = 9000  # moto's plain HTTP, on the same address as the TLS front


@dataclass(frozen=True)
class ObjectStorage:
    address: str
    endpoint: str  # the name the nodes use (the answers' backup_endpoint)
    cert: Path  # PEM the nodes must trust

    @property
    def url(self) -> str:
        return f"https://{self.address}:443"


def moto_server() -> str | None:
    return shutil.which("moto_server") or next(
        (str(p) for p in [Path(sys.executable).parent / "moto_server"] if p.is_file()), None)


def start(processes: Processes, work: Path, address: str, endpoint: str, region: str, bucket: str,
          enter: tuple[str, ...] = ()) -> ObjectStorage:
    """Listen on ``address``:443 (run inside ``enter``'s namespace when given) and make
    ``bucket``."""
    moto = moto_server()
    if moto is None:
        raise HostError("moto_server is missing (the Object Storage stand-in): pip install 'moto[server]'")
    work.mkdir(parents=True, exist_ok=True)
    cert, key = work / "s3.crt", work / "s3.key"
    key_pair(cert, key, endpoint, address, (endpoint, address))  # pgBackRest checks DNS names only
    processes.spawn([*enter, moto, "-H", address, "-p", str(BACKEND_PORT)], "s3",
                    env={**os.environ, "MOTO_S3_CUSTOM_ENDPOINTS": f"http://{endpoint},{endpoint}"})
    wait_for_port_from(enter, address, BACKEND_PORT, 30)
    tlsfront.start(processes, work, "s3", f"{address}:443", cert, key, f"http://{address}:{BACKEND_PORT}", enter)
    body = (f"<CreateBucketConfiguration><LocationConstraint>{region}</LocationConstraint>"
            "</CreateBucketConfiguration>")
    create = ("import sys, urllib.request\n"
              "request = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), method='PUT')\n"
              "urllib.request.urlopen(request, timeout=30).read()\n")
    made = subprocess.run([*enter, sys.executable, "-c", create, f"http://{address}:{BACKEND_PORT}/{bucket}", body],
                          capture_output=True, text=True, timeout=60)
    if made.returncode != 0:
        raise HostError(f"the Object Storage stand-in did not make bucket {bucket}: {made.stderr.strip()[-500:]}")
    return ObjectStorage(address, endpoint, cert)
