"""The recorder's Redis link: its own round trip answers like `pipe.execute()`, fails like it, recovers."""

from __future__ import annotations

import time

import pytest
import redis

from common.redisconn import client_for
from harness.redis_server import RedisServer
from recorder.redislink import RedisLink
from tests.helpers import wait_for


def client(server: RedisServer) -> redis.Redis:
    """A client set up like the recorder's (common.redisconn.connect)."""
    return client_for(server.url)


def round_trip(conn: redis.Redis) -> redis.client.Pipeline:
    """What the recorder queues each second, in kind: index, forget, health, pins."""
    pipe = conn.pipeline(transaction=False)
    pipe.zadd("segments", {"seg-2": 2.0})
    pipe.zrem("segments", "seg-1")
    pipe.hset("health", mapping={"state": "recording", "updated_at": "12.5"})
    pipe.zrange("pins", 0, -1, withscores=True)
    return pipe


def reset(conn: redis.Redis) -> None:
    conn.delete("segments", "health", "pins", "wrong")
    conn.zadd("segments", {"seg-1": 1.0})
    conn.zadd("pins", {"press|1.000000|2.000000": 99.0})


def test_execute_answers_like_pipeline_execute(private_redis: RedisServer) -> None:
    conn = client(private_redis)
    reset(conn)
    expected = round_trip(conn).execute()
    reset(conn)
    assert RedisLink(conn, "cam1").execute(round_trip(conn)) == expected
    assert expected == [1, 1, 2, [(b"press|1.000000|2.000000", 99.0)]]


def test_an_error_reply_is_raised_once_every_reply_is_read(private_redis: RedisServer) -> None:
    conn = client(private_redis)
    reset(conn)
    conn.set("wrong", "a string")
    link = RedisLink(conn, "cam1")
    pipe = round_trip(conn)
    pipe.zadd("wrong", {"x": 1.0})  # WRONGTYPE
    pipe.hset("health", "after", "the error")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        link.execute(pipe)
    assert conn.hget("health", "after") == b"the error"
    # The link's connection is still in step: the next round trip reads its own replies.
    reset(conn)
    assert link.execute(round_trip(conn)) == [1, 1, 2, [(b"press|1.000000|2.000000", 99.0)]]
    # Through call(), a Redis error opens the circuit, as any other would.
    conn.set("wrong", "a string")
    pipe = conn.pipeline(transaction=False)
    pipe.zadd("wrong", {"x": 1.0})
    assert link.call(lambda: link.execute(pipe)) is None and not link.ok


def test_redis_restart_and_outage(private_redis: RedisServer) -> None:
    conn = client(private_redis)
    reset(conn)
    link = RedisLink(conn, "cam1")
    link.execute(round_trip(conn))
    # Restarted between two round trips: the kept connection is stale, and reconnected before use.
    private_redis.stop()
    private_redis.start()
    reset(conn)
    assert link.call(lambda: link.execute(round_trip(conn))) == [
        1,
        1,
        2,
        [(b"press|1.000000|2.000000", 99.0)],
    ]
    assert link.ok
    # Down: the round trip fails with redis-py's ConnectionError, the circuit opens and the recording
    # goes on; once Redis answers again, reconnect() closes it and the round trip works again.
    private_redis.stop()
    started = time.monotonic()
    assert link.call(lambda: link.execute(round_trip(conn))) is None and not link.ok
    assert time.monotonic() - started < 5
    private_redis.start()
    wait_for("the link back", link.reconnect, 10)
    reset(conn)
    assert link.execute(round_trip(conn)) == [1, 1, 2, [(b"press|1.000000|2.000000", 99.0)]]
