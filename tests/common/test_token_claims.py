"""A token has exactly one spelling, and its claims are in the range of the columns they name:
`read_token` refuses anything else as an invalid token (never a ValueError or an overflow later)."""

from __future__ import annotations

import base64

import pytest

from tests.common.test_security import GOOD, SECRET, hand_signed
from todo_common.security import InvalidTokenError, issue_token, read_token

HEADER = {"alg": "HS256", "typ": "JWT"}
ID_MAX = 2**63 - 1
PWV_MAX = 2**31 - 1  # users.password_version is a 32-bit INTEGER


def signed(**claims: object) -> str:
    return hand_signed(HEADER, {**GOOD, **claims}, SECRET.encode())


def non_canonical_last_character(segment: str) -> str:
    """`segment` with its last character changed in bits that base64 decoding drops."""
    decoded = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    for candidate in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_":
        other = segment[:-1] + candidate
        if (
            other != segment
            and base64.urlsafe_b64decode(other + "=" * (-len(other) % 4)) == decoded
        ):
            return other
    raise AssertionError(f"{segment!r} has no other spelling")


def test_the_canonical_token_passes() -> None:
    assert read_token(SECRET, issue_token(SECRET, ID_MAX, 60, PWV_MAX)).user_id == ID_MAX


def respelled(token: str) -> list[str]:
    header, payload, signature = token.split(".")
    return [
        token + "=",
        token + "==",
        f"{header}=.{payload}.{signature}",
        f"{header}.{payload}==.{signature}",
        f"{header}.{payload}.{non_canonical_last_character(signature)}",
        f"{header}.{payload}.{signature}.",
        f"{header}.{payload}.{signature}.x",
        f"{header}..{payload}.{signature}",
        f"{header}.{payload}.",
        f" {token}",
        f"{token}\n",
        f"{header}.{payload}.{signature[:-1]}+",  # base64, not base64url
        f"{header}.{payload}.{signature[:-1]}\uff21",
        "..",
        "",
    ]


@pytest.mark.parametrize("index", range(15))
def test_every_other_spelling_is_refused(index: int) -> None:
    spelling = respelled(issue_token(SECRET, 1, 60))[index]
    with pytest.raises(InvalidTokenError):
        read_token(SECRET, spelling)


@pytest.mark.parametrize(
    "sub", ["0", "-1", str(ID_MAX + 1), "1e3", " 1", "1 ", "01", "+1", "\uff11", "", "1.0", 1, None]
)
def test_sub_must_be_a_decimal_id_in_range(sub: object) -> None:
    with pytest.raises(InvalidTokenError):
        read_token(SECRET, signed(sub=sub))


@pytest.mark.parametrize("pwv", [0, -1, PWV_MAX + 1, 2**63, 1.0, True, "1", None])
def test_pwv_must_be_a_password_version_in_range(pwv: object) -> None:
    with pytest.raises(InvalidTokenError):
        read_token(SECRET, signed(pwv=pwv))


@pytest.mark.parametrize(("sub", "pwv"), [("1", 1), (str(ID_MAX), PWV_MAX), ("42", 7)])
def test_claims_at_the_bounds_pass(sub: str, pwv: int) -> None:
    claims = read_token(SECRET, signed(sub=sub, pwv=pwv))
    assert (claims.user_id, claims.password_version) == (int(sub), pwv)
