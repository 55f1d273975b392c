"""A real PgBouncer (Debian's `pgbouncer`) in transaction pooling mode in front of the local
PostgreSQL, for the tests that prove the code works through a transaction pooler."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from tests.support.servers import POSTGRES_HOST, POSTGRES_PORT, free_port, need_program, wait_until

# Few server connections per (database, user) pool, so that the clients of a test (two APIs with
# 10 connections each, a worker) really share them: PgBouncer hands each transaction to whichever
# server connection is free.
SERVER_POOL_SIZE = 3


@dataclass
class PgBouncer:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def url(self, database_url: str) -> str:
        """`database_url` (a PostgreSQL SQLAlchemy URL) with PgBouncer as its host and port."""
        return make_url(database_url).set(host="127.0.0.1", port=self.port).render_as_string(False)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # SIGTERM: PgBouncer exits at once
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_pgbouncer(folder: Path, single_connection_databases: tuple[str, ...] = ()) -> PgBouncer:
    """Start PgBouncer on a free port with its own ini in `folder`; every database of the local
    PostgreSQL is reachable through it, those in `single_connection_databases` over one server
    connection only (so that two clients of it certainly share a server session)."""
    program = need_program(
        "pgbouncer", shutil.which("pgbouncer", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    )
    port = free_port()
    users = folder / "userlist.txt"
    users.write_text('"postgres" ""\n')
    single = "".join(
        f"{name} = host={POSTGRES_HOST} port={POSTGRES_PORT} dbname={name} pool_size=1\n"
        for name in single_connection_databases
    )
    ini = folder / "pgbouncer.ini"
    # The log goes to stderr, which we capture, and there is no pidfile (we hold the process):
    # as root, PgBouncer drops to `nobody` before opening either, and could not reach the
    # test's private temporary folder. It reads the ini and the userlist before that.
    ini.write_text(
        f"""[databases]
{single}* = host={POSTGRES_HOST} port={POSTGRES_PORT}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {users}
pool_mode = transaction
default_pool_size = {SERVER_POOL_SIZE}
max_client_conn = 200
logfile =
pidfile =
"""
    )
    log_path = folder / "pgbouncer.log"
    # PgBouncer refuses to run as root ("PgBouncer should not run as root"): -u switches user.
    as_user = ["-u", "nobody"] if os.geteuid() == 0 else []
    process = subprocess.Popen(
        [program, *as_user, str(ini)], stdout=log_path.open("wb"), stderr=subprocess.STDOUT
    )
    bouncer = PgBouncer(process, port, log_path)

    def listening() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"pgbouncer exited early:\n{bouncer.log()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    if not wait_until(listening, 15):
        bouncer.stop()
        raise RuntimeError(f"pgbouncer did not listen within 15s:\n{bouncer.log()}")
    return bouncer
