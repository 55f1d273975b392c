"""Authentication: the seed's password and token modes, bad credentials, the token route."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import time

import httpx
import jwt
import pytest
from sqlalchemy import delete

from tests.api.test_todos import TODOS, create
from tests.common.test_security import hand_signed
from tests.support.servers import BIN, ApiServer, add_user, clean_env, get_token
from todo_common.db import create_engine
from todo_common.models import User
from todo_common.settings import Settings


class Bearer(httpx.Auth):
    def __init__(self, token: str) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request):  # type: ignore[no-untyped-def]
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


@pytest.mark.parametrize(
    "auth",
    [None, ("nobody", "whatever"), ("", ""), "Basic !!!notbase64", "Digest abc", "Bearer x.y.z"],
)
def test_bad_credentials_get_401_json_with_a_challenge(api: ApiServer, auth: object) -> None:
    headers = {"Authorization": auth} if isinstance(auth, str) else {}
    basic = auth if isinstance(auth, tuple) else None
    with api.client(auth=basic) as http:
        response = http.get(TODOS, headers=headers)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert response.json()["status"] == 401
    assert response.json()["error"] == "unauthorized"


def test_wrong_password_is_401(api: ApiServer) -> None:
    name, _ = api.add_user("right password")
    with api.client(auth=(name, "wrong password")) as http:
        assert http.get(TODOS).status_code == 401


def test_unauthenticated_get_item_is_401(api: ApiServer) -> None:
    with api.client(auth=api.add_user()) as owner:
        location = create(owner)
    with api.client() as anonymous:
        response = anonymous.get(location)
    assert response.status_code == 401


def test_password_mode_has_no_token_route(api: ApiServer) -> None:
    with api.client(auth=api.add_user()) as http:
        assert http.get("/auth/request-token").status_code == 404


def test_token_route_gives_an_uncacheable_token(token_api: ApiServer) -> None:
    with token_api.client(auth=token_api.add_user()) as http:
        response = http.get("/auth/request-token")

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-cache, no-store, max-age=0"
    claims = jwt.decode(response.json()["token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 3600
    assert response.json()["expires_in"] == 3600


def test_token_mode_refuses_passwords_on_the_api(token_api: ApiServer) -> None:
    with token_api.client(auth=token_api.add_user()) as http:
        response = http.get(TODOS)

    assert response.status_code == 401
    assert "Bearer" in response.headers["WWW-Authenticate"]


def test_token_works_as_seed_basic_username_and_as_bearer(token_api: ApiServer) -> None:
    token = get_token(token_api, token_api.add_user())

    with token_api.client(auth=(token, "")) as seed_style:
        location = create(seed_style)
        assert seed_style.get(location).status_code == 200
    with token_api.client(auth=Bearer(token)) as bearer:
        assert bearer.get(location).status_code == 200


def test_a_token_cannot_buy_another_token(token_api: ApiServer) -> None:
    token = get_token(token_api, token_api.add_user())

    with token_api.client(auth=Bearer(token)) as http:
        assert http.get("/auth/request-token").status_code == 401
    with token_api.client(auth=(token, "")) as http:
        assert http.get("/auth/request-token").status_code == 401


def test_token_route_refuses_bad_passwords(token_api: ApiServer) -> None:
    name, _ = token_api.add_user()
    with token_api.client(auth=(name, "nope")) as http:
        response = http.get("/auth/request-token")
    assert response.status_code == 401
    assert response.json()["status"] == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="todo"'


def _forge(claims: dict[str, object], key: str, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # HS512 forgery
def test_forged_expired_and_unsigned_tokens_are_refused(token_api: ApiServer) -> None:
    token = get_token(token_api, token_api.add_user())
    claims = jwt.decode(token, options={"verify_signature": False})
    now = int(time.time())
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    payload = token.split(".")[1]
    bad_tokens = [
        _forge(claims, "not the server's secret key at all, 32+ bytes"),
        _forge({**claims, "iat": now - 7200, "exp": now - 3600}, _server_key(token_api)),
        f"{header}.{payload}.",
        token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        _forge(claims, _server_key(token_api), algorithm="HS512"),
        # RS/HS confusion: an RS256 header over an HMAC-SHA256 made with the real key.
        hand_signed({"alg": "RS256", "typ": "JWT"}, claims, _server_key(token_api).encode()),
    ]
    for bad in bad_tokens:
        with token_api.client(auth=Bearer(bad)) as http:
            assert http.get(TODOS).status_code == 401, bad


def _server_key(server: ApiServer) -> str:
    return server.env.get("TODO_SECRET_KEY") or Settings().secret_key


def test_the_forging_helpers_make_accepted_tokens_under_hs256(token_api: ApiServer) -> None:
    """The refusals above are for the algorithm, not for a broken forging helper."""
    token = get_token(token_api, token_api.add_user())
    claims = jwt.decode(token, options={"verify_signature": False})
    remade = hand_signed({"alg": "HS256", "typ": "JWT"}, claims, _server_key(token_api).encode())
    with token_api.client(auth=Bearer(remade)) as http:
        assert http.get(TODOS).status_code == 200


def passwd(server: ApiServer, name: str, password: str) -> None:
    result = subprocess.run(
        [str(BIN / "todoctl"), "passwd", name, "--password-stdin"],
        input=password + "\n",
        env=clean_env(TODO_DATABASE_URL=server.database_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_a_password_change_revokes_older_tokens(token_api: ApiServer) -> None:
    name, old_password = token_api.add_user()
    first = get_token(token_api, (name, old_password))
    second = get_token(token_api, (name, old_password))
    with token_api.client(auth=Bearer(first)) as http:
        assert http.get(TODOS).status_code == 200  # also remembered by the server's token cache

    passwd(token_api, name, "a brand new password")

    for old_token in (first, second):
        with token_api.client(auth=Bearer(old_token)) as http:
            assert http.get(TODOS).status_code == 401
            assert http.post(TODOS, json={"name": "n", "task": "t"}).status_code == 401
        with token_api.client(auth=(old_token, "")) as http:  # the seed's Basic form
            assert http.get(TODOS).status_code == 401
    with token_api.client(auth=(name, old_password)) as http:
        assert http.get("/auth/request-token").status_code == 401
    fresh = get_token(token_api, (name, "a brand new password"))
    with token_api.client(auth=Bearer(fresh)) as http:
        assert http.get(TODOS).status_code == 200


def test_a_password_change_ends_http_basic_with_the_old_password(api: ApiServer) -> None:
    name, old_password = api.add_user()
    with api.client(auth=(name, old_password)) as http:
        assert http.get(TODOS).status_code == 200  # now remembered as verified

    passwd(api, name, "another new password")

    with api.client(auth=(name, old_password)) as http:
        assert http.get(TODOS).status_code == 401
    with api.client(auth=(name, "another new password")) as http:
        assert http.get(TODOS).status_code == 200


def remove_user(server: ApiServer, name: str) -> None:
    async def remove() -> None:
        engine = create_engine(Settings(database_url=server.database_url))
        async with engine.begin() as connection:
            await connection.execute(delete(User).where(User.username == name))
        await engine.dispose()

    asyncio.run(remove())


def test_a_deleted_users_known_login_is_refused_and_its_name_can_be_taken_again(
    api: ApiServer,
) -> None:
    """The server knows the login from the first request; the user's deletion refuses it at
    once, and a new user of the same name and password is that new user, not the old one."""
    name, password = api.add_user()
    with api.client(auth=(name, password)) as http:
        create(http)
        assert http.get(TODOS).json()["meta"]["total"] == 1
    remove_user(api, name)
    with api.client(auth=(name, password)) as http:
        for _ in range(2):
            assert http.get(TODOS).status_code == 401
            assert http.post(TODOS, json={"name": "n", "task": "t"}).status_code == 401
    add_user(api.database_url, name, password)
    with api.client(auth=(name, password)) as http:
        assert http.get(TODOS).json()["meta"]["total"] == 0


def test_token_of_a_deleted_user_cannot_create(token_api: ApiServer) -> None:
    user = token_api.add_user()
    token = get_token(token_api, user)
    remove_user(token_api, user[0])
    with token_api.client(auth=Bearer(token)) as http:
        response = http.post(TODOS, json={"name": "n", "task": "t"})
    assert response.status_code == 401
    assert response.json()["status"] == 401
