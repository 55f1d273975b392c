"""A real nginx in front of `todo-api` replicas, set up as ingress-nginx sets up its upstreams.

The config lives in a folder of the test's own (pid file, logs and temp paths too) and nginx runs
in the foreground, so a test can start it, rewrite its upstream and reload it (SIGHUP: new workers
take the new config, the old ones finish their requests and exit), and stop it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support import local_http
from tests.support.servers import ApiServer, free_port, need_program, wait_until

# What ingress-nginx writes for a location (its nginx.tmpl), minus what needs its Lua balancer:
# the edge REPLACES X-Forwarded-For with the peer's address, so a client's own is never trusted,
# and every other X-Forwarded-* header is the proxy's own value, never the client's.
CONFIG = """\
{user}
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log notice;
events {{ worker_connections 1024; }}
http {{
    access_log {folder}/access.log;
    client_body_temp_path {folder}/client_body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    # Clients get a connection per request: nginx's old workers close idle client connections
    # at a reload, and a request sent on one just then may be lost (RFC 9112 9.3.1), whatever the
    # replicas do. What is under test is the path from nginx to the replicas.
    keepalive_timeout 0;

    map $http_x_request_id $req_id {{
        default $http_x_request_id;
        "" $request_id;
    }}

    upstream todo-api {{
{servers}
        keepalive 32;
        # Shorter than hypercorn's 5 s keep-alive, so nginx never sends a request on an upstream
        # connection the replica is closing as idle (a POST there would be a 502).
        keepalive_timeout 4s;
    }}

    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://todo-api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Request-ID $req_id;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_set_header X-Forwarded-Port $server_port;
            proxy_set_header X-Forwarded-Proto {scheme};
            proxy_set_header X-Scheme {scheme};
        }}
    }}
}}
"""


@dataclass
class Nginx:
    """nginx proxying to `replicas`; `scheme` is the X-Forwarded-Proto it sends (ingress-nginx
    sends `https` when TLS ends at it; this nginx serves plain HTTP, so `https` stands for that)."""

    folder: Path
    replicas: list[ApiServer]
    scheme: str = "$scheme"
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.binary = need_program("nginx", shutil.which("nginx", path="/usr/sbin:/usr/bin"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.folder.mkdir(parents=True, exist_ok=True)

    @property
    def config_path(self) -> Path:
        return self.folder / "nginx.conf"

    def write_config(self) -> None:
        addresses = [replica.url.removeprefix("http://") for replica in self.replicas]
        servers = "\n".join(f"        server {address};" for address in addresses)
        # As root, nginx would run its workers as nobody, who cannot use the test's folders.
        user = "user root;" if os.geteuid() == 0 else ""
        self.config_path.write_text(
            CONFIG.format(
                user=user, folder=self.folder, servers=servers, port=self.port, scheme=self.scheme
            )
        )

    def start(self) -> Nginx:
        self.write_config()
        command = [self.binary, "-c", str(self.config_path), "-p", str(self.folder)]
        self.process = subprocess.Popen(
            [*command, "-g", "daemon off;"],
            stdout=(self.folder / "stdout.log").open("wb"),
            stderr=subprocess.STDOUT,
        )

        def up() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"nginx exited early:\n{self.error_log()}")
            try:
                return local_http.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        if not wait_until(up, 15):
            self.stop()
            raise RuntimeError(f"nginx did not answer:\n{self.error_log()}")
        return self

    def remove(self, replica: ApiServer) -> None:
        """Take `replica` out of the upstream and reload: new requests no longer go to it."""
        assert self.process is not None
        self.replicas = [r for r in self.replicas if r is not replica]
        self.write_config()
        reloads = self.error_log().count("reconfiguring")
        self.process.send_signal(signal.SIGHUP)
        assert wait_until(lambda: self.error_log().count("reconfiguring") > reloads, 10)

    def error_log(self) -> str:
        path = self.folder / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: in-flight requests finish
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def open_connections(port: int) -> int:
    """How many TCP connections to 127.0.0.1:`port` are established now (from /proc/net/tcp)."""
    wanted = f"0100007F:{port:04X}"
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[2] == wanted and fields[3] == "01":  # remote address, state ESTABLISHED
            count += 1
    return count
