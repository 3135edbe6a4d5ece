"""The recorder's link to Redis: a circuit breaker, so that a Redis outage never stops the recording.

While Redis answers, calls go through. The first error opens the circuit: it is logged once, further
calls are skipped (segments keep going to disk), and `reconnect()` pings every `RETRY_EVERY` seconds.
When Redis answers again the caller rebuilds the index from the disk, which is the source of truth.

The per-second round trip goes through `execute()`, on a connection the link keeps for itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis

from common.log import event, get_logger

log = get_logger(__name__)
T = TypeVar("T")

RETRY_EVERY = 2.0


class RedisLink:
    """One camera's Redis connection; `call()` returns None instead of raising while Redis is down."""

    def __init__(self, conn: redis.Redis, camera: str) -> None:
        self.conn = conn
        self.camera = camera
        self.ok = True
        self.next_try = 0.0
        # The round trip's own connection (made on first use, reconnected by redis-py after an error).
        self.own: redis.connection.ConnectionInterface | None = None

    def call(self, fn: Callable[[], T]) -> T | None:
        """Run a Redis operation; if Redis is down, note it and carry on recording to disk."""
        if not self.ok:
            return None
        try:
            return fn()
        except redis.RedisError as exc:
            self.ok = False
            self.next_try = time.monotonic() + RETRY_EVERY
            event(
                log,
                "redis_down",
                logging.WARNING,
                msg=f"Redis is unreachable ({exc}); recording continues to disk, the index is rebuilt "
                "from disk when Redis is back",
                camera=self.camera,
            )
            return None

    def done(self, fn: Callable[[], None]) -> bool:
        """`call()` for an operation that returns nothing: True if it went through."""

        def run() -> bool:
            fn()
            return True

        return self.call(run) is True

    def reconnect(self) -> bool:
        """While the circuit is open, ping when due; True once, when Redis answers again."""
        if self.ok or time.monotonic() < self.next_try:
            return False
        try:
            self.conn.ping()
        except redis.RedisError:
            self.next_try = time.monotonic() + RETRY_EVERY
            return False
        self.ok = True
        return True

    def execute(self, pipe: redis.client.Pipeline) -> list[Any]:
        """What `pipe.execute()` does for a pipeline without MULTI, on the link's own connection.

        redis-py packs the queued commands and parses each reply with its own callbacks, and its errors
        are raised (a `redis.RedisError`: `call()` opens the circuit). As the pool does when it hands out
        a connection, one that has something to read (a reply out of step, or Redis closed it: a restart)
        is reconnected first; the connection's own `Retry` applies, as in `execute()`. What is left out
        is the pool's checkout and release and the pipeline's bookkeeping around them: about a third of
        the round trip's CPU, once a second all day. Every reply is read before an error reply is
        raised, so the connection never falls out of step.
        """
        # redis-py's types see Redis.transaction(), a method; on a Pipeline it is the bool it was made with.
        assert not pipe.transaction, "a MULTI/EXEC pipeline needs pipe.execute()"  # type: ignore[truthy-function]
        commands = pipe.command_stack
        conn = self.own
        if conn is None:
            conn = self.own = self.conn.connection_pool.make_connection()
        try:
            stale = conn.can_read()  # connects first if needed
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            stale = True
        if stale:
            conn.disconnect()
        client = self.conn

        def attempt() -> list[Any]:
            conn.send_packed_command(conn.pack_commands([args for args, _ in commands]))
            replies: list[Any] = []
            for args, options in commands:
                try:
                    replies.append(client.parse_response(conn, args[0], **options))
                except redis.ResponseError as exc:
                    replies.append(exc)
            for reply in replies:
                if isinstance(reply, redis.ResponseError):
                    raise reply
            return replies

        return conn.retry.call_with_retry(attempt, lambda _error: conn.disconnect())
