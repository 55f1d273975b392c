"""Request smuggling: a request whose framing is ambiguous (RFC 9112 6.3) is refused with a 400
and the connection closed, so nothing sent after it on the connection is ever answered.

These tests speak HTTP/1.1 over a raw socket: HTTP clients refuse to send such requests.
"""

from __future__ import annotations

import socket

import orjson
import pytest

from tests.api.test_todos import TODOS
from tests.support.servers import ApiServer
from todo_api.framing import framing_problem

SMUGGLED = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


def exchange(server: ApiServer, data: bytes, timeout: float = 5) -> bytes:
    """Everything the server sends back on one connection until it closes it (or goes quiet)."""
    host, port = server.url.removeprefix("http://").split(":")
    received = b""
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(data)
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            pytest.fail(f"the connection was kept open; received so far: {received!r}")
    return received


def responses(received: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """(status, headers, body) of each response in `received` (bodies framed by Content-Length)."""
    parsed = []
    while received:
        head, _, rest = received.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        parsed.append((int(status_line.split()[1]), headers, rest[:length]))
        received = rest[length:]
    return parsed


def request(head: str, body: bytes) -> bytes:
    return head.replace("\n", "\r\n").encode() + b"\r\n" + body


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(
            f"POST {TODOS} HTTP/1.1\nHost: x\nContent-Length: 5\nTransfer-Encoding: chunked\n",
            id="cl-then-te",
        ),
        pytest.param(
            f"POST {TODOS} HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\nContent-Length: 5\n",
            id="te-then-cl",
        ),
        pytest.param(
            f"GET {TODOS} HTTP/1.1\nHost: x\nContent-Length: 0\nTransfer-Encoding: chunked\n",
            id="get-with-both",
        ),
    ],
)
def test_content_length_with_transfer_encoding_is_refused_and_closed(
    api: ApiServer, head: str
) -> None:
    received = exchange(api, request(head, b"0\r\n\r\n" + SMUGGLED))

    answered = responses(received)
    assert len(answered) == 1, received  # the smuggled GET was never answered
    status, headers, body = answered[0]
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert headers["connection"].lower() == "close"
    assert orjson.loads(body)["status"] == 400


@pytest.mark.parametrize(
    "framing",
    [
        pytest.param("Content-Length: 5\nContent-Length: 6\n", id="two-lengths"),
        pytest.param("Content-Length: 5, 6\n", id="a-list-of-lengths"),
        pytest.param("Transfer-Encoding: gzip\n", id="te-gzip"),
        pytest.param("Transfer-Encoding: chunked, gzip\n", id="te-chunked-not-last"),
        pytest.param("Transfer-Encoding: chunked\nTransfer-Encoding: gzip\n", id="te-twice"),
    ],
)
def test_other_ambiguous_framing_is_refused_and_closed(api: ApiServer, framing: str) -> None:
    head = f"POST {TODOS} HTTP/1.1\nHost: x\n{framing}"
    received = exchange(api, request(head, b"0\r\n\r\n" + SMUGGLED))

    answered = responses(received)
    assert len(answered) == 1, received
    status = answered[0][0]
    assert 400 <= status < 600 and status not in (401, 404, 405), received


def test_plain_requests_on_a_kept_alive_connection_are_all_answered(api: ApiServer) -> None:
    """The baseline: without ambiguous framing, both requests get their answer."""
    head = "POST /healthz HTTP/1.1\nHost: x\nContent-Length: 2\n"
    closing = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    received = exchange(api, request(head, b"{}" + closing))
    assert [status for status, _, _ in responses(received)] == [405, 200]


@pytest.mark.parametrize(
    ("headers", "refused"),
    [
        ([], False),
        ([(b"content-length", b"5")], False),
        ([(b"content-length", b"5"), (b"content-length", b"5")], False),
        ([(b"transfer-encoding", b"chunked")], False),
        ([(b"transfer-encoding", b"gzip, Chunked")], False),
        ([(b"content-length", b"5"), (b"transfer-encoding", b"chunked")], True),
        ([(b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"0")], True),
        ([(b"content-length", b"5"), (b"content-length", b"6")], True),
        ([(b"content-length", b"5, 6")], True),
        ([(b"content-length", b"-1")], True),
        ([(b"content-length", b"")], True),
        ([(b"transfer-encoding", b"gzip")], True),
        ([(b"transfer-encoding", b"chunked, gzip")], True),
        ([(b"transfer-encoding", b"chunked"), (b"transfer-encoding", b"chunked")], True),
        ([(b"transfer-encoding", b"")], True),
    ],
)
def test_framing_rules(headers: list[tuple[bytes, bytes]], refused: bool) -> None:
    """The rules themselves, including the cases h11 refuses before the app could see them
    (they still matter behind another server or protocol)."""
    assert (framing_problem(headers) is not None) is refused
