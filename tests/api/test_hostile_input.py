"""Hostile input at the edges of the API, against a real `todo-api`: raw bytes in Authorization,
impossible todo ids and redirect tricks, odd spellings of a token, out-of-range token claims,
and X-Forwarded-For values that are not addresses.

Each answer is the documented JSON error; nothing is logged with a traceback, nothing the
client sent unchecked ends up in a Redis key or an access-log line.
"""

from __future__ import annotations

import ipaddress
import uuid

import httpx
import jwt
import pytest
import redis

from tests.api.test_auth import Bearer
from tests.api.test_todos import TODOS, create
from tests.common.test_security import hand_signed
from tests.support.servers import ApiServer, fresh_address, get_token
from todo_api import proxy
from todo_common.settings import Settings

ID_MAX = 2**63 - 1


def assert_json_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["status"] == status


def records_of(server: ApiServer, request_id: str) -> list[dict[str, object]]:
    return [r for r in server.records() if r.get("request_id") == request_id]


# --- hole 4: Authorization headers that are not ASCII -------------------------------------------

NON_ASCII_AUTHORIZATION = [
    pytest.param("Basic ä".encode("latin-1"), id="basic-latin1"),
    pytest.param("Basic äbc=".encode(), id="basic-utf8"),
    pytest.param(b"Basic \xff\xfe\x80", id="basic-raw-bytes"),
    pytest.param(b"Basic YWxp\xe9Y2U6cHc=", id="basic-base64-with-a-stray-byte"),
    pytest.param("Bearer äx.y.z".encode("latin-1"), id="bearer-latin1"),
    pytest.param("Bäsic YWxpY2U6cHc=".encode("latin-1"), id="scheme-latin1"),
]


@pytest.mark.parametrize("header", NON_ASCII_AUTHORIZATION)
def test_non_ascii_authorization_is_a_401_without_a_traceback(
    api: ApiServer, header: bytes
) -> None:
    request_id = uuid.uuid4().hex
    with api.client() as http:
        response = http.get(TODOS, headers={"Authorization": header, "X-Request-ID": request_id})

    assert_json_error(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    logged = records_of(api, request_id)
    assert logged, "the request was not logged"
    assert all("exception" not in r and r.get("level") != "error" for r in logged), logged


@pytest.mark.parametrize("header", NON_ASCII_AUTHORIZATION)
def test_non_ascii_authorization_is_a_401_in_token_mode(
    token_api: ApiServer, header: bytes
) -> None:
    with token_api.client() as http:
        response = http.get(TODOS, headers={"Authorization": header})
    assert_json_error(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


# --- hole 5: todo ids are ASCII digits, 1..2^63-1, and routing never redirects -----------------

# Digits that are not ASCII (escaped: they look like the ASCII ones).
FULLWIDTH = {ord("0") + i: 0xFF10 + i for i in range(10)}
ARABIC_INDIC = {ord("0") + i: 0x0660 + i for i in range(10)}


def impossible_spellings(todo_id: int) -> list[str]:
    """Paths of the todo `todo_id` that must not reach it, and ids no todo can have."""
    digits = str(todo_id)
    return [
        digits.translate(FULLWIDTH),
        digits.translate(ARABIC_INDIC),
        f"0{digits}",
        f"+{digits}",
        f"-{digits}",
        f"%20{digits}",
        f"{digits}%20",
        "0",
        "-1",
        str(ID_MAX + 1),
        str(2**64),
        "9" * 40,
        "1" * 5000,  # int() of over 4300 digits raises ValueError, not a routing miss
    ]


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_impossible_ids_are_404_for_every_method(api: ApiServer, method: str) -> None:
    with api.client(auth=api.add_user()) as http:
        location = create(http)
        todo_id = int(location.rsplit("/", 1)[1])
        for spelling in impossible_spellings(todo_id):
            response = http.request(
                method, f"{TODOS}{spelling}", json={"name": "hacked", "task": "hacked"}
            )
            assert_json_error(response, 404)
        # The todo itself is untouched and still served at its one URL.
        served = http.get(location)
    assert served.status_code == 200
    assert served.json()["name"] != "hacked"


def test_the_largest_id_is_routed(api: ApiServer) -> None:
    """The bound is the id column's: 2^63-1 reaches the view (and is simply not found)."""
    with api.client(auth=api.add_user()) as http:
        for method in ("GET", "PUT", "DELETE"):
            response = http.request(method, f"{TODOS}{ID_MAX}", json={"name": "n", "task": "t"})
            assert_json_error(response, 404)
            assert response.json()["message"] != "", response.json()


@pytest.mark.parametrize("path_suffix", ["4//", "4///", "/4", "//", "4/"])
def test_no_redirect_takes_its_host_from_the_request(api: ApiServer, path_suffix: str) -> None:
    with api.client() as http:
        response = http.get(f"{TODOS}{path_suffix}", headers={"Host": "evil.example"})

    assert "evil.example" not in response.headers.get("Location", "")
    assert "evil.example" not in response.text
    if 300 <= response.status_code < 400:
        assert response.headers["Content-Type"] == "application/json"
        assert response.headers["Location"].startswith("/")
    else:
        assert response.headers["Content-Type"] == "application/json"
        assert response.status_code in (401, 404), response.status_code


def test_merged_slashes_do_not_reach_a_todo(api: ApiServer) -> None:
    with api.client(auth=api.add_user()) as http:
        location = create(http)
        response = http.get(location + "//", headers={"Host": "evil.example"})
    assert_json_error(response, 404)


# --- hole 8a/8b: one token, one spelling; claims in range ----------------------------------------


def _server_key(server: ApiServer) -> str:
    return server.env.get("TODO_SECRET_KEY") or Settings().secret_key


def respellings(token: str) -> list[str]:
    """The same signed token, spelled differently: each must be refused. (Whitespace around the
    credential is not among them: HTTP strips it from header values.)"""
    header, payload, signature = token.split(".")
    # Flip the unused low bits of the last character of the signature (32 bytes: 43 chars, the
    # last carrying 4 bits of data and 2 of padding), so it decodes to the same bytes.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(signature[-1])
    sloppy = alphabet[last | 1] if last | 1 != last else alphabet[last & ~1]
    return [
        token + "=",
        token + "==",
        f"{header}=.{payload}.{signature}",
        f"{header}.{payload}=.{signature}",
        f"{header}.{payload}.{signature[:-1]}{sloppy}",
        f"{header}.{payload}.{signature}.",
        f"{header}.{payload}.{signature[:-1]}+",
    ]


def test_a_token_has_one_spelling(token_api: ApiServer) -> None:
    token = get_token(token_api, token_api.add_user())
    with token_api.client(auth=Bearer(token)) as http:
        assert http.get(TODOS).status_code == 200
    for spelling in respellings(token):
        with token_api.client(auth=Bearer(spelling)) as http:
            response = http.get(TODOS)
        assert response.status_code == 401, spelling
        with token_api.client(auth=(spelling, "")) as http:
            response = http.get(TODOS)
        assert response.status_code == 401, spelling


BAD_SUBS: list[object] = ["0", "-1", str(ID_MAX + 1), str(2**64), "me", "1e3", " 1", "1 ", "01"]
BAD_SUBS += ["\uff11", "", 1, None, ["1"]]
BAD_PWVS: list[object] = [0, -1, 2**31, 2**63, 2**64, 1.0, True, "1"]


@pytest.mark.parametrize(
    ("claim", "value"),
    [*(("sub", v) for v in BAD_SUBS), *(("pwv", v) for v in BAD_PWVS)],
    ids=repr,
)
def test_signed_tokens_with_out_of_range_claims_are_401(
    token_api: ApiServer, claim: str, value: object
) -> None:
    token = get_token(token_api, token_api.add_user())
    claims = jwt.decode(token, options={"verify_signature": False})
    forged = hand_signed(
        {"alg": "HS256", "typ": "JWT"}, {**claims, claim: value}, _server_key(token_api).encode()
    )
    with token_api.client(auth=Bearer(forged)) as http:
        response = http.get(TODOS)
    assert_json_error(response, 401)


# --- hole 8c: only a valid IP from X-Forwarded-For is the client address -------------------------

JUNK_FORWARDED_FOR = [
    pytest.param("<script>alert(1)</script>", id="script"),
    pytest.param("x" * 8192, id="8KB"),
    pytest.param("", id="empty"),
    pytest.param(", ,", id="blank-entries"),
    pytest.param("203.0.113.300", id="not-an-ipv4"),
    pytest.param("unknown", id="unknown"),
    pytest.param("[::1]:80", id="bracketed"),
]


@pytest.mark.parametrize("forwarded_for", JUNK_FORWARDED_FOR)
def test_junk_forwarded_for_never_becomes_the_client_address(
    limited_api: ApiServer, redis_url: str, forwarded_for: str
) -> None:
    request_id = uuid.uuid4().hex
    with limited_api.client() as http:
        response = http.get(
            TODOS, headers={"X-Forwarded-For": forwarded_for, "X-Request-ID": request_id}
        )
    assert response.status_code in (401, 429), response.status_code

    prefix = limited_api.env["TODO_REDIS_KEY_PREFIX"]
    client = redis.Redis.from_url(redis_url)
    try:
        keys = [k.decode("latin-1") for k in client.scan_iter(f"{prefix}*")]
    finally:
        client.close()
    assert keys, "the limiter wrote no key: the test would prove nothing"
    for key in keys:
        assert len(key) < 200, key[:200]
        assert "<" not in key and "xxxx" not in key and "unknown" not in key, key
        assert not key.endswith((":", "addr:")), key
    (logged,) = [r for r in records_of(limited_api, request_id) if r.get("event") == "request"]
    ipaddress.ip_address(str(logged["client"]))  # raises unless it is an address


@pytest.mark.parametrize(
    ("forwarded_for", "normalized"),
    [("2001:DB8:0:0::1", "2001:db8::1"), ("198.51.100.7", "198.51.100.7")],
)
def test_forwarded_addresses_are_stored_normalized(
    limited_api: ApiServer, forwarded_for: str, normalized: str
) -> None:
    request_id = uuid.uuid4().hex
    with limited_api.client() as http:
        http.get(TODOS, headers={"X-Forwarded-For": forwarded_for, "X-Request-ID": request_id})
    (logged,) = [r for r in records_of(limited_api, request_id) if r.get("event") == "request"]
    assert logged["client"] == normalized


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"X-Forwarded-Proto": "javascript"}, id="proto"),
        pytest.param({"X-Forwarded-Proto": ""}, id="empty-proto"),
        pytest.param({"X-Forwarded-Host": "evil.example/<script>"}, id="host-with-a-path"),
        pytest.param({"X-Forwarded-Host": "a b"}, id="host-with-a-space"),
        pytest.param({"X-Forwarded-Host": "h" * 300}, id="host-too-long"),
        pytest.param({"X-Forwarded-Host": "todo.example:99999"}, id="port-too-big"),
        pytest.param({"X-Forwarded-Host": "user@todo.example"}, id="userinfo"),
    ],
)
def test_junk_forwarded_proto_and_host_are_ignored(
    limited_api: ApiServer, headers: dict[str, str]
) -> None:
    with limited_api.client(auth=limited_api.add_user()) as http:
        response = http.post(
            TODOS,
            json={"name": "n", "task": "t"},
            headers={"X-Forwarded-For": fresh_address(), **headers},
        )
    assert response.status_code == 201, response.text
    assert response.headers["Location"].startswith(f"{limited_api.url}/api/v1.0/todos/")


def test_sane_forwarded_host_with_a_port_is_used(limited_api: ApiServer) -> None:
    headers = {
        "X-Forwarded-For": fresh_address(),
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "todo.example.com:8443",
    }
    with limited_api.client(auth=limited_api.add_user()) as http:
        response = http.post(TODOS, json={"name": "n", "task": "t"}, headers=headers)
    assert response.headers["Location"].startswith("https://todo.example.com:8443/api/v1.0/")


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),  # one client, one key
        ("fe80::1%<script>", None),
        ("01.2.3.4", None),
        ("203.0.113.9:443", None),
        ("", None),
    ],
)
def test_client_address_parsing(value: str, address: str | None) -> None:
    assert proxy.client_address(value) == address


@pytest.mark.parametrize(
    ("value", "sane"),
    [
        ("todo.example.com", True),
        ("todo.example.com:8443", True),
        ("127.0.0.1:5000", True),
        ("[2001:db8::1]:443", True),
        ("[not:an:address::zz]", False),
        ("todo.example.com:0", False),
        ("todo.example.com:", False),
        ("-bad.example", False),
        ("a..b", False),
        ("evil.example/path", False),
        ("", False),
    ],
)
def test_forwarded_host_parsing(value: str, sane: bool) -> None:
    assert (proxy.host(value) is not None) is sane
