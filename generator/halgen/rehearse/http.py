"""HTTP to the rehearsal's load balancers: one-off requests and a keep-alive load
generator (threads, each with its own connection), timing every request."""

from __future__ import annotations

import http.client
import ssl
import threading
import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Endpoint:
    """A load balancer as clients reach it; ``host`` is the name they ask for (a stack
    domain): the Host header and, with TLS, the name sent in the handshake (SNI) and
    verified against ``ca_file``'s certificates."""

    address: str
    port: int
    tls: bool
    host: str
    ca_file: str = ""

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.address}:{self.port}"

    def connect(self, timeout: float, name: str | None = None) -> http.client.HTTPConnection:
        if self.tls:
            return _NamedHTTPSConnection(self.address, self.port, name or self.host, self.ca_file, timeout)
        return http.client.HTTPConnection(self.address, self.port, timeout=timeout)


class _NamedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to an address, asking for (and verifying) a name, like curl --resolve."""

    def __init__(self, address: str, port: int, name: str, ca_file: str, timeout: float) -> None:
        context = ssl.create_default_context(cafile=ca_file or None)
        super().__init__(address, port, timeout=timeout, context=context)
        self.context, self.name = context, name

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self.context.wrap_socket(self.sock, server_hostname=self.name)


@dataclass(frozen=True)
class Response:
    status: int
    body: str
    cookie: str = ""


def send(conn: http.client.HTTPConnection, endpoint: Endpoint, method: str, path: str,
         body: bytes | None = None, cookie: str = "", host: str | None = None) -> Response:
    headers = {"Host": host or endpoint.host}
    if cookie:
        headers["Cookie"] = cookie
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    text = response.read().decode(errors="replace").strip()
    return Response(response.status, text, (response.getheader("Set-Cookie") or "").split(";")[0])


def request(endpoint: Endpoint, method: str, path: str, body: bytes | None = None, cookie: str = "",
            host: str | None = None, timeout: float = 10) -> Response:
    """One request on a fresh connection (asking for ``host`` in the TLS handshake too)."""
    conn = endpoint.connect(timeout, host)
    try:
        return send(conn, endpoint, method, path, body, cookie, host)
    finally:
        conn.close()


@dataclass(frozen=True)
class Sample:
    started: float  # time.monotonic()
    seconds: float
    status: int  # 0: no HTTP answer (connection error or timeout)
    body: str
    cut: bool = False  # the answer began (status line, headers) and then broke off


    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def ended(self) -> float:
        return self.started + self.seconds


@dataclass
class Load:
    """Closed-loop load: each thread sends its next request when the last one is answered,
    round-robin over the endpoints, on a kept-alive connection (re-made after an error)."""

    endpoints: list[Endpoint]
    method: str = "GET"
    path: str = "/"
    body: bytes | None = None
    cookie: str = ""
    threads: int = 4
    timeout: float = 60
    pause: float = 0.0  # between one thread's requests
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Load:
        for index in range(self.threads):
            worker = threading.Thread(target=self._run, args=(self.endpoints[index % len(self.endpoints)],),
                                      daemon=True, name=f"load-{index}")
            worker.start()
            self._workers.append(worker)
        return self

    def __exit__(self, *exc: object) -> None:
        # No join here: on an error or Ctrl-C, requests stuck on a stopped server must not
        # delay the cleanup (the threads are daemons). Drills call stop() for the samples.
        self.halt()

    def halt(self) -> None:
        """Send no new request (the ones in flight go on)."""
        self._stop.set()

    def stop(self) -> list[Sample]:
        """Stop sending; wait for the requests in flight (each ends by its timeout)."""
        self.halt()
        for worker in self._workers:
            worker.join(self.timeout + 5)
        with self._lock:
            return sorted(self.samples, key=lambda s: s.started)

    def snapshot(self) -> list[Sample]:
        with self._lock:
            return list(self.samples)

    def _run(self, endpoint: Endpoint) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            conn = conn or endpoint.connect(self.timeout)
            started = time.monotonic()
            try:
                response = send(conn, endpoint, self.method, self.path, self.body, self.cookie)
                status, body = response.status, response.body
            except (OSError, http.client.HTTPException) as err:
                status, body = 0, f"{type(err).__name__}: {err}"
                cut = isinstance(err, http.client.IncompleteRead)
                conn.close()
                conn = None
            else:
                cut = False
            with self._lock:
                self.samples.append(Sample(started, time.monotonic() - started, status, body, cut))
            if self.pause:
                self._stop.wait(self.pause)
        if conn is not None:
            conn.close()
