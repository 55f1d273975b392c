"""`/auth/request-token`: trade a username and password for a signed, expiring token.

Mounted only when TODO_USE_TOKEN_AUTH is on. Only a password is accepted here (a token cannot
renew itself), and the answer must never be cached. With rate limits on, attempts are limited per
username as well as per address, and the route fails closed when Redis is down (see access.py).
"""

from __future__ import annotations

from quart import Blueprint, Response, current_app
from quart_schema import document_response

from todo_api.access import current_principal, require_password
from todo_api.conditional import json_response
from todo_api.openapi import GATE_ERRORS, blueprint_responds_with
from todo_api.resources import settings_of
from todo_api.schemas import TokenOut
from todo_common.security import issue_token

blueprint = Blueprint("tokens", __name__, url_prefix="/auth")
blueprint_responds_with(blueprint, *GATE_ERRORS)

NO_CACHE = "no-cache, no-store, max-age=0"


blueprint.before_request(require_password)


@blueprint.get("/request-token")
@document_response(TokenOut)
async def request_token() -> Response:
    settings = settings_of(current_app)
    principal = current_principal()
    token = issue_token(
        settings.secret_key, principal.user_id, settings.token_ttl, principal.password_version
    )
    return json_response(
        TokenOut(token=token, expires_in=settings.token_ttl), headers={"Cache-Control": NO_CACHE}
    )
