"""Where hit counts wait in Redis between the API that counts them and the worker that flushes them.

The API adds to one field per (owner, todo) in a *pending* hash, in batches (every count positive:
only views that happened are sent, never taken back). A flush hands the counts over
without losing or double-counting any:

1. claim: one Lua script renames the pending hash to `batch:<id>` and adds `<id>` to the set of
   open batches; new hits start a fresh pending hash;
2. apply: in one database transaction, record `<id>` as applied and add its counts (a batch id
   already recorded means an earlier flush applied it: skip);
3. forget: delete `batch:<id>` and remove `<id>` from the open set.

Every flush first finishes the open batches a crashed or concurrent flush left, so a kill at any
point loses nothing (the batch is still in Redis) and counts nothing twice (its id is recorded in
the same transaction as its counts).
"""

from __future__ import annotations

from dataclasses import dataclass

# A flush asked for early stays asked for this long (or until a flush claims the pending hits).
FLUSH_REQUEST_TTL_SECONDS = 60
# A sender's last batch number is kept this long after its last batch (a sender resends a batch
# within seconds of Redis answering again).
SENDER_TTL_SECONDS = 3600

# Adds a batch of views: KEYS[1] pending hash, KEYS[2] flush-requested flag, KEYS[3] the
# sender's last batch number (`HitKeys.sender`); ARGV[1] threshold, ARGV[2] the batch's number,
# then field, count, field, count, ... (every count positive). A batch whose number is not above
# the sender's last one was added already (a call that timed out, which Redis ran after all, sent
# again) and adds nothing. Returns 1 when the caller should
# ask for an early flush: at least `threshold` todos have hits waiting and no flush was asked
# for recently (the flag, set here with SET NX, means exactly one caller asks); else 0.
ADD_VIEWS_SCRIPT = f"""
if tonumber(ARGV[2]) <= tonumber(redis.call('GET', KEYS[3]) or '0') then
  return 0
end
redis.call('SET', KEYS[3], ARGV[2], 'EX', {SENDER_TTL_SECONDS})
for i = 3, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[1])
   and redis.call('SET', KEYS[2], '1', 'NX', 'EX', {FLUSH_REQUEST_TTL_SECONDS}) then
  return 1
end
return 0
"""

# KEYS[1] pending hash, KEYS[2] batch hash, KEYS[3] open-batches set, KEYS[4] flush-requested
# flag; ARGV[1] batch id. Clearing the flag lets the next crowd of waiting todos ask again.
CLAIM_SCRIPT = """
redis.call('DEL', KEYS[4])
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('SADD', KEYS[3], ARGV[1])
return 1
"""

# KEYS[1] batch hash, KEYS[2] open-batches set; ARGV[1] batch id.
FORGET_SCRIPT = """
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
return 1
"""


@dataclass(frozen=True)
class HitKeys:
    """The Redis keys of hit counting under one deployment's key prefix."""

    prefix: str

    @property
    def pending(self) -> str:
        return f"{self.prefix}hits:pending"

    @property
    def flush_requested(self) -> str:
        return f"{self.prefix}hits:flush-requested"

    @property
    def open_batches(self) -> str:
        return f"{self.prefix}hits:batches"

    def batch(self, batch_id: str) -> str:
        return f"{self.prefix}hits:batch:{batch_id}"

    def sender(self, sender_id: str) -> str:
        return f"{self.prefix}hits:sender:{sender_id}"


def hit_field(owner_id: int, todo_id: int) -> str:
    return f"{owner_id}:{todo_id}"


def parse_hit_field(field: str) -> tuple[int, int] | None:
    """(owner id, todo id) from a pending field; None for anything malformed."""
    owner, _, todo = field.partition(":")
    if owner.isdigit() and todo.isdigit():
        return int(owner), int(todo)
    return None
