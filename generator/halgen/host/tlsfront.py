"""nginx terminating TLS in front of a local test server (moto, pebble) that must be
reached under a real service's name and port: the Object Storage endpoint, an ACME
directory URL."""

from __future__ import annotations

from pathlib import Path

from halgen.host.processes import Processes, wait_for_port_from


def start(processes: Processes, work: Path, name: str, listen: str, cert: Path, key: Path, upstream: str,
          enter: tuple[str, ...] = (), rewrites: dict[str, str] | None = None) -> None:
    """nginx on ``listen`` (ADDRESS:PORT) with ``cert``, passing everything to ``upstream``
    (a URL: http://… or https://…, not verified) with the client's Host header kept;
    ``rewrites`` maps an exact path to another path upstream."""
    prefix = work / f"{name}-tls"
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    exact = "".join(f"        location = {path} {{ proxy_pass {upstream}{target}; }}\n"
                    for path, target in (rewrites or {}).items())
    conf = prefix / "nginx.conf"
    conf.write_text(f"""pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_max_body_size 0;
    upstream backend {{ server {upstream.split("://", 1)[1]}; keepalive 8; }}
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $host;
    proxy_request_buffering off;
    proxy_buffering off;
    server {{
        listen {listen} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
{exact}        location / {{ proxy_pass {upstream.split("://", 1)[0]}://backend; }}
    }}
}}
""")
    processes.spawn([*enter, "nginx", "-c", str(conf), "-p", str(prefix), "-g", "daemon off;"], f"{name}-tls")
    address, port = listen.rsplit(":", 1)
    wait_for_port_from(enter, address, int(port), 30)
