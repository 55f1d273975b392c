"""Every route the app registers, walked on a live server: outside the public operational
endpoints, no credentials get 401, and another user's credentials get 404 for the owner's todo
(never 403, never the todo) or only their own data from a collection.

Routes are enumerated from the app's URL map, so a route added later is walked too; one this
test cannot classify fails it until someone decides whether it is public.
"""

from __future__ import annotations

import httpx
import pytest

from tests.api.test_auth import Bearer
from tests.api.test_todos import TODOS
from tests.support.servers import ApiServer, get_token
from todo_api.app import create_app
from todo_common.settings import Settings

PUBLIC = {"static", "openapi", "ops.healthz", "ops.readyz", "ops.metrics", "docs.docs_page"}
PUBLIC |= {"docs.asset"}
BODY = {"name": "walked", "task": "by someone else"}


def routes(server: ApiServer) -> list[tuple[str, str, str, tuple[str, ...]]]:
    """(endpoint, method, rule, path arguments) for every non-public route and method of an app
    configured as `server` is."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in server.env.items():
            if name.startswith("TODO_"):
                patch.setenv(name, value)
        app = create_app(Settings())
    walked = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC:
            continue
        for method in sorted(rule.methods or ()):
            walked.append((rule.endpoint, method, rule.rule, tuple(sorted(rule.arguments))))
    return walked


def url_for(rule: str, arguments: tuple[str, ...], todo_id: str) -> str:
    if arguments == ():
        return rule
    if arguments == ("todo_id",):
        return rule.split("<", 1)[0] + todo_id
    raise AssertionError(f"the walk does not know how to fill {arguments} in {rule}")


@pytest.fixture(params=[False, True], ids=["passwords", "tokens"])
def walked_server(request: pytest.FixtureRequest, servers, backend: str) -> ApiServer:  # type: ignore[no-untyped-def]
    if request.param:
        return servers.get(backend, TODO_USE_TOKEN_AUTH="true")
    return servers.get(backend)


def credentials(server: ApiServer, user: tuple[str, str]) -> httpx.Auth | tuple[str, str]:
    if server.env.get("TODO_USE_TOKEN_AUTH") == "true":
        return Bearer(get_token(server, user))
    return user


def test_every_route_needs_credentials_and_hides_other_users_todos(
    walked_server: ApiServer,
) -> None:
    server = walked_server
    owner, intruder = server.add_user(), server.add_user()
    with server.client(auth=credentials(server, owner)) as as_owner:
        created = as_owner.post(TODOS, json={"name": "mine", "task": "private"})
        assert created.status_code == 201
        location = created.headers["Location"]
        before = as_owner.get(location).json()
    todo_id = location.rsplit("/", 1)[1]
    walked = routes(server)
    assert {endpoint for endpoint, *_ in walked} >= {
        "todos.list_todos",
        "todos.get_todo_item",
        "todos.update_todo_item",
        "todos.delete_todo_item",
        "stats.get_stats",
    }

    intruder_auth = credentials(server, intruder)
    for endpoint, method, rule, arguments in walked:
        url = url_for(rule, arguments, todo_id)
        body = BODY if method in ("POST", "PUT") else None
        with server.client() as anonymous:
            response = anonymous.request(method, url, json=body)
        assert response.status_code == 401, (endpoint, method, response.text)
        assert "WWW-Authenticate" in response.headers, (endpoint, method)
        if method != "HEAD":
            assert response.json()["status"] == 401, (endpoint, method)

        # The token route takes only a password; everything else the mode's credentials.
        auth = intruder if endpoint.startswith("tokens.") else intruder_auth
        with server.client(auth=auth) as as_intruder:
            response = as_intruder.request(method, url, json=body)
        assert response.status_code not in (401, 403), (endpoint, method, response.text)
        if arguments and method == "OPTIONS":
            # Route metadata (Allow), the same for every id: it must not tell that this one exists.
            with server.client(auth=intruder_auth) as as_intruder:
                nowhere = as_intruder.options(url_for(rule, arguments, str(2**63 - 1)))
            assert (response.status_code, response.headers.get("Allow")) == (
                nowhere.status_code,
                nowhere.headers.get("Allow"),
            ), endpoint
        elif arguments:  # the owner's todo, addressed by someone else
            assert response.status_code == 404, (endpoint, method, response.text)
        else:  # a collection: the intruder's own, without the owner's todo
            assert response.status_code < 400, (endpoint, method, response.text)
        if method not in ("HEAD", "OPTIONS"):
            assert "private" not in response.text and location not in response.text

    with server.client(auth=credentials(server, owner)) as as_owner:
        after = as_owner.get(location)
    assert after.status_code == 200
    assert after.json() == before  # no PUT or DELETE by the intruder touched it
