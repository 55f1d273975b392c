"""Password hashing and tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest

from todo_common.security import (
    InvalidTokenError,
    TokenReader,
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
    token = issue_token(SECRET, 42, ttl=60, password_version=3)
    claims = read_token(SECRET, token)
    assert claims.user_id == 42
    assert claims.expires_at - claims.issued_at == 60
    assert claims.password_version == 3
    assert abs(claims.issued_at - time.time()) < 5
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    payload = jwt.decode(token, options={"verify_signature": False})
    assert set(payload) == {"sub", "iat", "exp", "typ", "pwv"}
    assert payload["typ"] == "access"


GOOD = {"sub": "1", "iat": 0, "exp": 2**40, "typ": "access", "pwv": 1}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_signed(header: dict[str, str], claims: dict[str, object], key: bytes) -> str:
    """A JWT signed with HMAC-SHA256 under `key`, whatever algorithm its header names."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def test_the_good_claims_pass() -> None:
    """The baseline the refusals below differ from in one respect each."""
    assert read_token(SECRET, jwt.encode(GOOD, SECRET, algorithm="HS256")).user_id == 1
    assert read_token(SECRET, hand_signed({"alg": "HS256", "typ": "JWT"}, GOOD, SECRET.encode()))


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(issue_token(SECRET, 1, ttl=60, now=time.time() - 3600), id="expired"),
        pytest.param(issue_token("another secret entirely, also long enough", 1, 60), id="forged"),
        pytest.param(jwt.encode(GOOD, SECRET, algorithm="HS512"), id="hs512"),
        pytest.param(jwt.encode(GOOD, None, algorithm="none"), id="alg-none"),
        pytest.param(jwt.encode(GOOD, None, algorithm="none") + "x", id="alg-none-signed"),
        # RS/HS confusion: an RS256 header over an HMAC made with a key the attacker knows.
        pytest.param(hand_signed({"alg": "RS256"}, GOOD, SECRET.encode()), id="rs256-header"),
        pytest.param(hand_signed({"alg": "hs256"}, GOOD, SECRET.encode()), id="alg-case"),
        *(
            pytest.param(
                jwt.encode({k: v for k, v in GOOD.items() if k != missing}, SECRET, "HS256"),
                id=f"no-{missing}",
            )
            for missing in GOOD
        ),
        pytest.param(jwt.encode({**GOOD, "typ": "refresh"}, SECRET, "HS256"), id="typ-refresh"),
        pytest.param(jwt.encode({**GOOD, "pwv": "1"}, SECRET, "HS256"), id="pwv-string"),
        pytest.param(jwt.encode({**GOOD, "sub": "me"}, SECRET, "HS256"), id="sub-not-an-id"),
        pytest.param("not-a-token", id="garbage"),
    ],
)
def test_bad_tokens_are_refused(token: str) -> None:
    with pytest.raises(InvalidTokenError):
        read_token(SECRET, token)


def test_verified_passwords_remember_only_the_same_hash_and_password() -> None:
    memory = VerifiedPasswords(SECRET, ttl=60)
    memory.remember(1, "$hash-one", "pw")
    assert memory.check(1, "$hash-one", "pw")
    assert not memory.check(1, "$hash-one", "other")
    assert not memory.check(1, "$hash-two", "pw")  # password changed: new hash
    assert not memory.check(2, "$hash-one", "pw")


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_verified_passwords_expire() -> None:
    clock = FakeClock(1000.0)
    memory = VerifiedPasswords(SECRET, ttl=60, clock=clock)
    memory.remember(1, "$h", "pw")
    clock.now += 60
    assert memory.check(1, "$h", "pw")  # still within its time to live
    clock.now += 0.001
    assert not memory.check(1, "$h", "pw")
    assert not memory.check(1, "$h", "pw")  # and forgotten


def test_verified_passwords_make_room_by_dropping_expired_entries_first() -> None:
    clock = FakeClock(0.0)
    memory = VerifiedPasswords(SECRET, ttl=10, max_entries=2, clock=clock)
    memory.remember(1, "$h", "old")
    clock.now = 5
    memory.remember(2, "$h", "young")
    clock.now = 12  # the first has expired, the second not
    memory.remember(3, "$h", "new")
    assert memory.check(2, "$h", "young")
    assert memory.check(3, "$h", "new")


def test_token_reader_remembers_valid_tokens_but_not_past_expiry() -> None:
    key = "k" * 40
    now = time.time()
    clock = FakeClock(now)
    reader = TokenReader(key, clock=clock)
    token = issue_token(key, 7, ttl=60, now=now)
    assert reader.read(token).user_id == 7
    assert reader.read(token).user_id == 7  # from memory
    forged = issue_token("another key" * 4, 7, ttl=60)
    with pytest.raises(InvalidTokenError):
        reader.read(forged)
    with pytest.raises(InvalidTokenError):
        reader.read(forged)  # failures are never remembered as valid
    clock.now = now + 59
    assert reader.read(token).user_id == 7
    clock.now = now + 60
    with pytest.raises(InvalidTokenError):
        reader.read(token)  # remembered, yet expired
