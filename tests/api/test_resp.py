"""The pipelined Redis client (`todo_api.resp`) and its boundary (`todo_api.redis_client`) against
real redis-server processes: replies reach their own callers under 60 commands at once, error
replies, a hung server (a timeout fails what is in flight at once, then it reconnects), a
restart, a caller that gives up, AUTH and SELECT from the URL, NOSCRIPT, and a full pipeline
answered as busy."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.instances import RedisServer
from tests.support.servers import free_port, wait_until
from todo_api.redis_client import RedisClient
from todo_api.resp import ReplyError, RespClient
from todo_common.exceptions import RedisBusy, RedisUnavailable
from todo_common.settings import Settings


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    instance = RedisServer(free_port(), tmp_path)
    instance.start()
    yield instance
    if instance.process is not None and instance.process.poll() is None:
        instance.resume()  # a test may have left it paused
    instance.stop()


def client(url: str, reply_timeout: float = 1.0) -> RespClient:
    return RespClient(url, connect_timeout=0.5, reply_timeout=reply_timeout)


async def test_sixty_commands_at_once_each_get_their_own_reply(server: RedisServer) -> None:
    resp = client(server.url)
    try:
        payloads = [f"{n}:".encode() + bytes([n % 256]) * (n * 3000) for n in range(60)]
        echoed = await asyncio.gather(*(resp.execute("ECHO", p) for p in payloads))
        counted = await asyncio.gather(*(resp.execute("INCR", "counter") for _ in range(60)))
        assert await resp.execute("PING") == b"PONG"
        assert await resp.execute("GET", "missing") is None
        assert await resp.execute("RPUSH", "list", "a", "b") == 2
        assert await resp.execute("LRANGE", "list", 0, -1) == [b"a", b"b"]
    finally:
        await resp.close()
    assert echoed == payloads  # large replies arrive in pieces; each is still its caller's
    assert sorted(counted) == list(range(1, 61))


async def test_an_error_reply_is_raised_and_the_connection_goes_on(server: RedisServer) -> None:
    resp = client(server.url)
    try:
        await resp.execute("SET", "text", "x")
        with pytest.raises(ReplyError, match="WRONGTYPE"):
            await resp.execute("LPUSH", "text", "y")
        assert await resp.execute("GET", "text") == b"x"
    finally:
        await resp.close()


async def test_a_hung_server_fails_what_is_in_flight_at_once_then_reconnects(
    server: RedisServer,
) -> None:
    resp = client(server.url, reply_timeout=0.5)
    try:
        await resp.execute("PING")
        server.pause()
        started = time.monotonic()
        results = await asyncio.gather(
            *(resp.execute("INCR", "n") for _ in range(10)), return_exceptions=True
        )
        waited = time.monotonic() - started
        server.resume()
        assert await resp.execute("PING") == b"PONG"
    finally:
        await resp.close()
    assert all(isinstance(result, OSError) for result in results), results
    assert waited < 1.5  # one timeout for all ten, not one each


async def test_a_restarted_server_is_reconnected_to(server: RedisServer) -> None:
    resp = client(server.url)
    try:
        assert await resp.execute("INCR", "n") == 1
        server.stop()
        with pytest.raises(OSError):
            await resp.execute("PING")  # refused
        server.start()
        assert await resp.execute("INCR", "n") == 1  # a new server, a new connection
    finally:
        await resp.close()


async def test_a_caller_that_gives_up_leaves_the_replies_in_order(server: RedisServer) -> None:
    resp = client(server.url)
    try:
        slow = asyncio.create_task(resp.execute("BLPOP", "never", 1))
        await asyncio.sleep(0.1)
        after = asyncio.create_task(resp.execute("ECHO", "mine"))
        await asyncio.sleep(0.1)
        slow.cancel()
        assert await after == b"mine"  # not BLPOP's nil
        assert await resp.execute("ECHO", "next") == b"next"
    finally:
        await resp.close()


async def test_the_url_password_and_database_are_used(server: RedisServer) -> None:
    admin = redis.Redis(port=server.port)
    admin.config_set("requirepass", "s3cret")
    admin = redis.Redis(port=server.port, password="s3cret", db=3)
    resp = client(f"redis://:s3cret@127.0.0.1:{server.port}/3")
    wrong = client(f"redis://:wrong@127.0.0.1:{server.port}/3")
    try:
        await resp.execute("SET", "where", "db3")
        with pytest.raises(ReplyError, match=r"WRONGPASS|invalid"):
            await wrong.execute("PING")
    finally:
        await resp.close()
        await wrong.close()
    assert admin.get("where") == b"db3"


async def test_a_refused_connection_is_an_os_error_at_once() -> None:
    resp = client(f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    with pytest.raises(OSError):
        await resp.execute("PING")
    assert time.monotonic() - started < 0.5


SCRIPT = "return redis.call('INCR', KEYS[1])"


def redis_client(url: str, **settings: object) -> RedisClient:
    return RedisClient(Settings(redis_url=url, redis_key_prefix="t:", **settings))  # type: ignore[arg-type]


async def test_a_script_redis_forgot_is_sent_again(server: RedisServer) -> None:
    client = redis_client(server.url)
    await client.open()
    try:
        assert await client.run_script(SCRIPT, keys=["k"], args=[]) == 1
        redis.Redis(port=server.port).script_flush()
        assert await client.run_script(SCRIPT, keys=["k"], args=[]) == 2
    finally:
        await client.close()


async def test_errors_leave_the_boundary_translated(server: RedisServer) -> None:
    client = redis_client(server.url, redis_timeout=0.3)
    await client.open()
    try:
        with pytest.raises(RedisUnavailable, match="ERR"):
            await client.run_script("return redis.call('NOPE')", keys=[], args=[])
        server.pause()
        with pytest.raises(RedisUnavailable, match="did not answer"):
            await client.run_script(SCRIPT, keys=["k"], args=[])
        server.resume()
        server.stop()
        with pytest.raises(RedisUnavailable):
            await client.run_script(SCRIPT, keys=["k"], args=[])
    finally:
        await client.close()


async def test_a_full_pipeline_is_busy_not_down(server: RedisServer) -> None:
    client = redis_client(server.url, redis_pool_size=2, redis_timeout=10)
    await client.open()
    try:
        await client.run_script(SCRIPT, keys=["k"], args=[])
        server.pause()  # answers nothing, but nothing has failed yet
        stuck = [asyncio.create_task(client.run_script(SCRIPT, keys=["k"], args=[])) for _ in "ab"]
        await asyncio.sleep(0.1)
        started = time.monotonic()
        with pytest.raises(RedisBusy):
            await client.run_script(SCRIPT, keys=["k"], args=[])
        assert 2.5 < time.monotonic() - started < 5
        server.resume()
        assert [await task for task in stuck] == [2, 3]
    finally:
        await client.close()


async def _connections(admin: redis.Redis, exclude: int) -> int:
    """The server's client connections, less the admin's own (`exclude`: its id)."""
    return sum(1 for entry in admin.client_list() if int(entry["id"]) != exclude)


async def test_callers_arriving_while_it_connects_share_one_connection(
    server: RedisServer,
) -> None:
    """Callers keep arriving, one per turn of the event loop, while the client connects (as
    requests do under load after a reconnect): all are served on one connection, and closing
    the client leaves none open."""
    admin = redis.Redis(port=server.port)
    me = admin.client_id()
    resp = client(server.url)
    try:
        calls = []
        for _ in range(50):
            calls.append(asyncio.create_task(resp.execute("PING")))
            await asyncio.sleep(0)
        assert await asyncio.gather(*calls) == [b"PONG"] * 50
        while_open = await _connections(admin, me)
    finally:
        await resp.close()
    await asyncio.sleep(0.2)  # the aborted sockets close, the server notices
    after_close = await _connections(admin, me)
    assert (while_open, after_close) == (1, 0)


async def test_a_connection_the_server_drops_at_once_fails_its_command_at_once(
    server: RedisServer,
) -> None:
    """A Redis at maxclients accepts, answers an error nobody asked for and closes. The caller
    that waited for that connection must fail at once, not send on the closed connection and
    wait out the reply timeout ("did not answer") on every request."""
    admin = redis.Redis(port=server.port)
    admin.config_set("maxclients", 1)  # the admin's connection is the one
    resp = client(server.url, reply_timeout=2.0)
    waits = []
    try:
        for _ in range(8):
            started = time.monotonic()
            with pytest.raises((ReplyError, OSError)) as failed:
                await resp.execute("PING")
            waits.append((round(time.monotonic() - started, 2), repr(failed.value)))
    finally:
        await resp.close()
    assert all(waited < 0.5 for waited, _ in waits), waits


async def test_closing_while_it_connects_fails_the_waiting_callers_as_connection_errors(
    server: RedisServer,
) -> None:
    """close() (the app stops serving) cancels a connect attempt in progress; its waiters were
    not cancelled, so they get a ConnectionError (RedisUnavailable upstream), not a
    CancelledError that no caller expects (the hit counter's sender would die of it, its batch
    lost, and the CancelledError would leave the app's after_serving)."""
    admin = redis.Redis(port=server.port)
    admin.config_set("requirepass", "s3cret")
    resp = client(f"redis://:s3cret@127.0.0.1:{server.port}/0", reply_timeout=5)
    server.pause()  # the kernel accepts the connection, but AUTH is never answered
    try:
        waiting = asyncio.create_task(resp.execute("PING"))
        await asyncio.sleep(0.2)
        await resp.close()
        (outcome,) = await asyncio.gather(waiting, return_exceptions=True)
    finally:
        server.resume()
    assert isinstance(outcome, ConnectionError), repr(outcome)


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A redis-server speaking TLS only, its certificate (for 127.0.0.1) signed by a private CA:
    its port and the CA's certificate."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")

    def run(command: str) -> None:
        subprocess.run([openssl, *command.split()], cwd=tmp_path, check=True, capture_output=True)

    run("req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=test-CA")
    run("req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1")
    (tmp_path / "san").write_text("subjectAltName=IP:127.0.0.1\n")
    run(
        "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt"
        " -days 2 -extfile san"
    )
    port = free_port()
    options = (
        f"--port 0 --tls-port {port} --bind 127.0.0.1 --tls-cert-file server.crt"
        " --tls-key-file server.key --tls-ca-cert-file ca.crt --tls-auth-clients no"
        " --appendonly no"
    )
    process = subprocess.Popen(
        ["redis-server", *options.split(), "--save", ""],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def accepts() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False

    try:
        assert wait_until(accepts, 10), "redis-server (TLS) did not start"
        yield port, tmp_path / "ca.crt"
    finally:
        process.terminate()
        process.wait(10)


async def test_a_rediss_url_s_certificate_options_are_used_as_redis_py_uses_them(
    tls_server: tuple[int, Path],
) -> None:
    """TODO_REDIS_URL is read as redis-py reads it: `ssl_ca_certs` (a private CA, as managed
    Redis services have) and `ssl_cert_reqs=none` are honoured. Ignored, the client cannot
    connect, and every Redis feature fails open for good: the rate limiter is off."""
    port, ca = tls_server
    urls = {
        "private CA": f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}",
        "unverified": f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=none",
    }
    for url in urls.values():
        assert redis.Redis.from_url(url).ping()  # what redis-py makes of these URLs
    answers = {}
    for name, url in urls.items():
        resp = client(url)
        try:
            answers[name] = await resp.execute("PING")
        except OSError as error:
            answers[name] = repr(error)
        finally:
            await resp.close()
    strict = client(f"rediss://127.0.0.1:{port}/0")
    try:
        with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
            await strict.execute("PING")  # by default the certificate is still verified
    finally:
        await strict.close()
    assert answers == dict.fromkeys(urls, b"PONG")
