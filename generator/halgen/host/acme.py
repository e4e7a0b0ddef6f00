"""A local ACME server standing in for Let's Encrypt: Debian's pebble (RFC 8555 test
server) and pebble-challtestsrv as the DNS pebble resolves the stack's names with.

pebble validates HTTP-01 challenges for real: it resolves each name through the mock
DNS (every name -> one load balancer's address) and fetches the token from that
address's ``http_port``, as Let's Encrypt would from port 80. Issued certificates
chain to a root pebble makes at start (``issuing_root``).
"""

from __future__ import annotations

import json
import ssl
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from halgen.host import tlsfront
from halgen.host.processes import HostError, Processes, wait_for_port_from
from halgen.host.tls import key_pair, self_signed_for_address

ACME_PORT, MANAGEMENT_PORT, DNS_PORT, DNS_MANAGEMENT_PORT = 14000, 15000, 8053, 8055


@dataclass(frozen=True)
class AcmeServer:
    address: str
    tls_cert: Path  # pebble's own HTTPS certificate: what certbot must trust (REQUESTS_CA_BUNDLE)

    @property
    def directory(self) -> str:
        return f"https://{self.address}:{ACME_PORT}/dir"

    def issuing_root(self) -> str:
        """The PEM root every certificate pebble issues chains to."""
        context = ssl.create_default_context(cafile=str(self.tls_cert))
        url = f"https://{self.address}:{MANAGEMENT_PORT}/roots/0"
        with urllib.request.urlopen(url, context=context, timeout=10) as response:  # noqa: S310 (https, local)
            return response.read().decode()

    def client_env(self) -> dict[str, str]:
        """What certbot (python-requests) needs to trust this server's HTTPS."""
        return {"REQUESTS_CA_BUNDLE": str(self.tls_cert)}


def start_pebble(processes: Processes, work: Path, address: str, http_port: int, resolve_to: str,
                 enter: tuple[str, ...] = ()) -> AcmeServer:
    """pebble on ``address`` (inside ``enter``'s network namespace when given); every name
    resolves to ``resolve_to``, whose ``http_port`` must serve the HTTP-01 challenge files."""
    work.mkdir(parents=True, exist_ok=True)
    cert, key = self_signed_for_address(work, address)
    config = {"pebble": {
        "listenAddress": f"{address}:{ACME_PORT}",
        "managementListenAddress": f"{address}:{MANAGEMENT_PORT}",
        "certificate": str(cert), "privateKey": str(key),
        "httpPort": http_port, "tlsPort": 0,
        "ocspResponderURL": "", "externalAccountBindingRequired": False,
    }}
    (work / "pebble.json").write_text(json.dumps(config, indent=2))
    processes.spawn([*enter, "pebble-challtestsrv", "-defaultIPv4", resolve_to, "-defaultIPv6", "",
                     "-dns01", f"{address}:{DNS_PORT}", "-management", f"{address}:{DNS_MANAGEMENT_PORT}",
                     "-http01", "", "-https01", "", "-tlsalpn01", ""], "pebble-dns")
    # No sleeps before validating and no nonces rejected on purpose: a test server, not a torture test.
    env = {"PATH": "/usr/bin:/bin", "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
    processes.spawn([*enter, "pebble", "-config", str(work / "pebble.json"), "-dnsserver", f"{address}:{DNS_PORT}"],
                    "pebble", env=env)
    try:
        wait_for_port_from(enter, address, ACME_PORT, 20)
        wait_for_port_from(enter, address, MANAGEMENT_PORT, 20)
    except TimeoutError as err:
        raise HostError(f"pebble did not start on {address}: see {processes.log('pebble')}") from err
    return AcmeServer(address, cert)


def start_as(processes: Processes, work: Path, directory_url: str, address: str, resolve_to: str,
             enter: tuple[str, ...] = ()) -> tuple[AcmeServer, Path]:
    """pebble answering at ``directory_url`` itself (e.g. Let's Encrypt's production URL,
    once the node resolves its host to ``address``): nginx on port 443 with a certificate
    for that host, the directory path mapped to pebble's /dir. Returns pebble and the
    certificate clients must trust."""
    url = urllib.parse.urlsplit(directory_url)
    host, port = url.hostname or "", url.port or 443
    pebble = start_pebble(processes, work, address, 80, resolve_to, enter)
    cert, key = work / "front.pem", work / "front.key"
    key_pair(cert, key, host, address, (host,))
    tlsfront.start(processes, work, "acme", f"{address}:{port}", cert, key, f"https://{address}:{ACME_PORT}", enter,
                   {url.path or "/": "/dir"})
    return pebble, cert
