"""Throwaway servers a test may stop, kill or freeze (redis-server, a PostgreSQL cluster) and a
TCP proxy that counts a client's round trips to a server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from tests.support.servers import free_port, wait_until
from todo_common.migrate import upgrade_database
from todo_common.settings import Settings


@dataclass
class RedisServer:
    """A throwaway redis-server on a free port, which a test may stop and start again."""

    port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def answers() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return True
            except OSError:
                return False

        if not wait_until(answers, 10):
            raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def shutdown_keeping_data(self) -> None:
        """Stop the way a Redis with persistence stops: write the data set to dump.rdb in the
        folder, then exit; `start()` loads it again (this server otherwise never saves)."""
        assert self.process is not None
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(b"SHUTDOWN SAVE\r\n")
            sock.recv(1024)  # the server closes the connection once it has saved
        self.process.wait(10)

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing answers (a hung server)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


class RoundTripCounter:
    """A TCP proxy that counts a client's round trips to a server (PostgreSQL, Redis, ...).

    A round trip is the client speaking after the server has answered (or speaking first), so
    pipelined commands sent together count once, exactly as the network sees them.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.round_trips = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        answered = True  # the client's first bytes start a round trip

        async def backward() -> None:
            nonlocal answered
            while data := await server_r.read(65536):
                answered = True
                client_w.write(data)
                await client_w.drain()
            client_w.close()

        pump = asyncio.ensure_future(backward())
        try:
            while data := await client_r.read(65536):
                if answered:
                    self.round_trips += 1
                    answered = False
                server_w.write(data)
                await server_w.drain()
        except ConnectionError:
            pass
        finally:
            server_w.close()
            pump.cancel()


def postgres_binary(name: str) -> str | None:
    """A PostgreSQL server program (initdb, pg_ctl), newest installed version first."""
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / name).exists():
            return str(folder / name)
    return shutil.which(name)


class PostgresCluster:
    """A throwaway PostgreSQL cluster (initdb + pg_ctl) on a free port, which a test may stop,
    kill, freeze and start again without touching the shared server.

    initdb and pg_ctl refuse to run as root, so as root they run as the `postgres` user, in a
    folder of its own outside pytest's (private) temp folders. fsync is off: these clusters only
    have to survive their processes dying, never the machine.
    """

    def __init__(self) -> None:
        initdb, pg_ctl = postgres_binary("initdb"), postgres_binary("pg_ctl")
        if initdb is None or pg_ctl is None:
            raise RuntimeError("PostgreSQL server programs (initdb, pg_ctl) are not installed")
        self.pg_ctl = pg_ctl
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="todo-pg-"))
        self.data = self.folder / "data"
        self.log_path = self.folder / "postgres.log"
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self._as_owner(initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def _as_owner(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        result = subprocess.run(
            [*prefix, *command], capture_output=True, text=True, timeout=60, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off"
        )
        self._as_owner(
            self.pg_ctl,
            "-D",
            str(self.data),
            "-l",
            str(self.log_path),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """`fast`: a clean shutdown (clients are disconnected); `immediate`: every server process
        quits at once, without a checkpoint, as if killed (crash recovery on the next start)."""
        self._as_owner(self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def _postmaster(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def _pids(self) -> list[int]:
        """The postmaster and every process it has forked (backends, checkpointer, ...)."""
        postmaster = self._postmaster()
        children = subprocess.run(
            ["pgrep", "-P", str(postmaster)], capture_output=True, text=True, check=False
        ).stdout.split()
        return [postmaster, *(int(pid) for pid in children)]

    def freeze(self) -> None:
        """SIGSTOP the whole server: connections stay open but nothing answers (a hung
        server or a network that drops packets). The postmaster stops first, so no backend it
        forks while the rest are being stopped escapes."""
        os.kill(self._postmaster(), signal.SIGSTOP)
        for pid in self._pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self._pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def create_database(self, name: str = "todo") -> str:
        """Create and migrate database `name`; returns its SQLAlchemy URL."""

        async def create() -> None:
            connection = await asyncpg.connect(self.admin_dsn)
            try:
                await connection.execute(f'CREATE DATABASE "{name}"')
            finally:
                await connection.close()

        asyncio.run(create())
        url = self.url(name)
        asyncio.run(upgrade_database(Settings(database_url=url)))
        return url

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                self.thaw()
            with contextlib.suppress(Exception):
                self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)
