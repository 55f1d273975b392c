"""Password hashing and tokens."""

from __future__ import annotations

import time

import jwt
import pytest

from todo_common.security import (
    InvalidTokenError,
    VerifiedPasswords,
    hash_password,
    issue_token,
    read_token,
    verify_password,
)

SECRET = "a test secret key that is long enough for every HMAC size we try" * 2


def test_argon2id_round_trip() -> None:
    stored = hash_password("s3cret")
    assert stored.startswith("$argon2id$")
    assert verify_password(stored, "s3cret")
    assert not verify_password(stored, "S3cret")


def test_unknown_user_is_checked_against_a_dummy_hash() -> None:
    assert verify_password(None, "anything") is False
    assert verify_password("not a hash", "anything") is False


def test_token_round_trip_and_claims() -> None:
    token = issue_token(SECRET, 42, ttl=60)
    claims = read_token(SECRET, token)
    assert claims.user_id == 42
    assert claims.expires_at - claims.issued_at == 60
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "HS256"


@pytest.mark.parametrize(
    "token",
    [
        issue_token(SECRET, 1, ttl=60, now=time.time() - 3600),  # expired
        issue_token("another secret entirely, also long enough", 1, ttl=60),
        jwt.encode(
            {"sub": "1", "iat": 0, "exp": 2**40, "typ": "access"}, SECRET, algorithm="HS512"
        ),
        jwt.encode({"sub": "1", "iat": 0, "exp": 2**40}, SECRET, algorithm="HS256"),
        jwt.encode(
            {"sub": "1", "iat": 0, "exp": 2**40, "typ": "refresh"}, SECRET, algorithm="HS256"
        ),
        "not-a-token",
    ],
)
def test_bad_tokens_are_refused(token: str) -> None:
    with pytest.raises(InvalidTokenError):
        read_token(SECRET, token)


def test_unsigned_token_is_refused() -> None:
    unsigned = jwt.encode(
        {"sub": "1", "iat": 0, "exp": 2**40, "typ": "access"}, None, algorithm="none"
    )
    with pytest.raises(InvalidTokenError):
        read_token(SECRET, unsigned)


def test_verified_passwords_remember_only_the_same_hash_and_password() -> None:
    memory = VerifiedPasswords(SECRET, ttl=60)
    memory.remember(1, "$hash-one", "pw")
    assert memory.check(1, "$hash-one", "pw")
    assert not memory.check(1, "$hash-one", "other")
    assert not memory.check(1, "$hash-two", "pw")  # password changed: new hash
    assert not memory.check(2, "$hash-one", "pw")


def test_verified_passwords_expire() -> None:
    memory = VerifiedPasswords(SECRET, ttl=0.01)
    memory.remember(1, "$h", "pw")
    time.sleep(0.02)
    assert not memory.check(1, "$h", "pw")


def test_token_reader_remembers_valid_tokens_but_not_past_expiry() -> None:
    from todo_common.security import InvalidTokenError, TokenReader, issue_token

    key = "k" * 40
    reader = TokenReader(key)
    now = time.time()
    short = issue_token(key, 7, ttl=2, now=now - 1)  # expires in about a second
    assert reader.read(short).user_id == 7
    assert reader.read(short).user_id == 7  # from memory
    forged = issue_token("another key" * 4, 7, ttl=60)
    with pytest.raises(InvalidTokenError):
        reader.read(forged)
    with pytest.raises(InvalidTokenError):
        reader.read(forged)  # failures are never remembered as valid
    time.sleep(1.2)
    with pytest.raises(InvalidTokenError):
        reader.read(short)  # remembered, yet expired
