"""The memory of known logins (`todo_api.passwords.KnownLogins`): exact credentials only, for a
minute, bounded, and forgotten per user."""

from __future__ import annotations

from todo_api.auth import Principal
from todo_api.passwords import KnownLogins

SECRET = "k" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_only_the_exact_credentials_are_recalled() -> None:
    known = KnownLogins(SECRET)
    known.remember("alice", "right", Principal(1, 3))
    assert known.recall("alice", "right") == Principal(1, 3)
    assert known.recall("alice", "wrong") is None
    assert known.recall("alice", "right ") is None
    assert known.recall("Alice", "right") is None
    # The separator cannot be forged by moving it between the name and the password.
    assert known.recall("alice\x00right", "") is None


def test_a_known_login_expires() -> None:
    clock = Clock()
    known = KnownLogins(SECRET, ttl=60, clock=clock)
    known.remember("alice", "right", Principal(1, 1))
    clock.now = 59.0
    assert known.recall("alice", "right") == Principal(1, 1)
    clock.now = 61.0
    assert known.recall("alice", "right") is None


def test_forgetting_a_user_forgets_all_its_logins_and_only_its() -> None:
    known = KnownLogins(SECRET)
    known.remember("alice", "one", Principal(1, 1))
    known.remember("alice", "two", Principal(1, 1))
    known.remember("bob", "three", Principal(2, 1))
    known.forget_user(1)
    assert known.recall("alice", "one") is None
    assert known.recall("alice", "two") is None
    assert known.recall("bob", "three") == Principal(2, 1)


def test_the_memory_stays_bounded() -> None:
    clock = Clock()
    known = KnownLogins(SECRET, ttl=10, max_entries=2, clock=clock)
    known.remember("a", "p", Principal(1, 1))
    known.remember("b", "p", Principal(2, 1))
    clock.now = 5.0
    known.remember("c", "p", Principal(3, 1))  # full, nothing expired: cleared first
    assert known.recall("a", "p") is None
    assert known.recall("c", "p") == Principal(3, 1)
