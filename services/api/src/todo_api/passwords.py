"""Checking a username and password: Argon2id, bounded, limited before it runs, no connection held.

Argon2id costs tens of milliseconds of CPU by design, which makes it the cheapest way to starve a
server. So a check here:

1. reads the user's login (id, hash, password version) in one short statement and gives the
   connection back: no database connection is ever held while a hash is computed;
2. accepts at once a password that matched this user's current hash within the last minute
   (`VerifiedPasswords`), so a Basic client does not pay Argon2id on every request, and waits
   for the check already running when the same credentials arrive at once (a client opening
   many connections pays one check, not one per connection);
3. otherwise calls the caller's `before_hashing` first: the gate spends one attempt of a rate
   limit window there, and refuses (429) before any hashing once the window is spent;
4. then waits for one of a few hashing slots (one per core) for at most `SLOT_WAIT_SECONDS`, and
   answers 503 with Retry-After rather than queue behind a flood;
5. hashes off the event loop. Unknown users are checked against a dummy hash: "no such user"
   and "wrong password" cost the same and look the same.

An empty password is refused without a check: no user has one, and nothing is learnt from that.

The /api routes go through `authenticate`, which first looks the credentials up in `KnownLogins`:
a username and password that passed a check within the last minute give their user id and
password version with no round trip at all, so HTTP Basic costs what a token costs (one statement
per request). That is safe because every store statement compares the password version with the
user's in its own round trip: after a password change (or the user's deletion) a known login is
refused there (`CredentialsRevoked`, 401) and forgotten (`forget_user`), and the next request with
those credentials is checked in full. A request that races a password change, even to the same
password, can therefore be refused once. The token route calls `check` and never uses the memory:
a token is only ever issued for a password checked against the current hash.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from prometheus_client import Counter

from todo_api.auth import Credentials, Principal
from todo_api.resources import Database
from todo_common.exceptions import APIError
from todo_common.security import SecretKeyedMemory, VerifiedPasswords, verify_password

PASSWORD_CHECKS = Counter(
    "todo_password_checks_total",
    "Argon2id password verifications run, by outcome (match, mismatch).",
    ["outcome"],
)
PASSWORD_CHECKS_REFUSED = Counter(
    "todo_password_checks_refused_total",
    "Password checks refused with 503 because no hashing slot came free in time.",
)

# How long a request may wait for a hashing slot before it is refused: a few dozen checks'
# worth on an idle core, so logins arriving together queue briefly while a flood is cut off.
SLOT_WAIT_SECONDS = 2.0
SLOT_RETRY_AFTER_SECONDS = 1

BeforeHashing = Callable[[], Awaitable[None]]


class KnownLogins:
    """Credentials that passed a password check recently: their user id and password version,
    found by the exact username and password only (see `SecretKeyedMemory`: no password is
    kept), for `ttl` seconds."""

    def __init__(
        self,
        secret_key: str,
        ttl: float = 60.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._memory = SecretKeyedMemory[Principal](
            secret_key, "known-logins", ttl, max_entries, clock
        )

    def recall(self, username: str, password: str) -> Principal | None:
        return self._memory.recall(username, password)

    def remember(self, username: str, password: str, principal: Principal) -> None:
        self._memory.remember(principal, username, password)

    def forget_user(self, user_id: int) -> None:
        """Every login of this user (its password changed, or it is gone)."""
        self._memory.forget_where(lambda principal: principal.user_id == user_id)


class PasswordChecker:
    def __init__(self, secret_key: str, database: Database, slots: int | None = None) -> None:
        self.database = database
        self.remembered = VerifiedPasswords(secret_key)
        self.known = KnownLogins(secret_key)
        self.slots = slots or len(os.sched_getaffinity(0))
        self._slots = asyncio.Semaphore(self.slots)
        # Checks running now, by (user id, stored hash, digest of the password tried); only
        # while they run, so identical credentials sent at once are checked once.
        self._in_flight: dict[tuple[int, str, bytes], asyncio.Future[bool]] = {}

    async def authenticate(
        self, credentials: Credentials, before_hashing: BeforeHashing
    ) -> Principal | None:
        """For the /api routes: a known login as it was (its password version is checked by the
        statement that serves the request), else `check`, remembered when it succeeds."""
        if credentials.scheme != "basic" or not credentials.password:
            return None
        principal = self.known.recall(credentials.username, credentials.password)
        if principal is None:
            principal = await self.check(credentials, before_hashing)
            if principal is not None:
                self.known.remember(credentials.username, credentials.password, principal)
        return principal

    def forget_user(self, user_id: int) -> None:
        """A statement refused this user's credentials: its logins are checked in full again."""
        self.known.forget_user(user_id)

    async def check(
        self, credentials: Credentials, before_hashing: BeforeHashing
    ) -> Principal | None:
        """The user these Basic credentials prove against the current stored hash, or None."""
        username, password = credentials.username, credentials.password
        if credentials.scheme != "basic" or not password:
            return None
        async with self.database.store() as store:
            login = await store.get_login(username=username)
        if login is None:
            await before_hashing()
            await self._hash(None, password)  # the same cost as a wrong password
            return None
        if self.remembered.check(login.user_id, login.password_hash, password):
            return Principal(login.user_id, login.password_version)
        key = (login.user_id, login.password_hash, hashlib.sha256(password.encode()).digest())
        same_check = self._in_flight.get(key)
        if same_check is not None:  # a client's connections opened at once: one check for all
            matches = await asyncio.shield(same_check)
        else:
            await before_hashing()
            check = asyncio.ensure_future(self._hash(login.password_hash, password))
            self._in_flight[key] = check
            try:
                matches = await asyncio.shield(check)
            finally:
                self._in_flight.pop(key, None)
            if matches:
                self.remembered.remember(login.user_id, login.password_hash, password)
        return Principal(login.user_id, login.password_version) if matches else None

    async def _hash(self, password_hash: str | None, password: str) -> bool:
        async with self._slot():
            matches = await asyncio.to_thread(verify_password, password_hash, password)
        PASSWORD_CHECKS.labels("match" if matches else "mismatch").inc()
        return matches

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        try:
            await asyncio.wait_for(self._slots.acquire(), SLOT_WAIT_SECONDS)
        except TimeoutError:
            PASSWORD_CHECKS_REFUSED.inc()
            raise APIError(
                503,
                "the server is busy checking passwords; retry shortly",
                {"Retry-After": str(SLOT_RETRY_AFTER_SECONDS)},
            ) from None
        try:
            yield
        finally:
            self._slots.release()
