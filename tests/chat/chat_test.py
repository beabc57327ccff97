#!/usr/bin/env python3
"""Chat checks: three real WebSocket users (the `websockets` package) on a running ws2api
in front of the PHP chat example (examples/php/chat.php); see tests/chat/run.sh.

    python3 tests/chat/chat_test.py --gateway ws://127.0.0.1:7001 --control http://127.0.0.1:7002

alice (default room `lobby`) and bob (`?room=lobby`) share a room on different shards,
carol is in `den`. Prints "PASS name" or "FAIL name: why" per check, then
"N passed, M failed"; exits 1 if anything failed. Every wait is bounded by a timeout.
"""

import argparse
import asyncio
import http.client
import json
import os
import sys
import urllib.parse
import uuid

import websockets
import websockets.exceptions as wsx

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from checks import check, finish, shard_of  # noqa: E402

TIMEOUT = 5.0  # seconds, for any single wait
CLOSED = object()


def http_call(base, method, path, body=b""):
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=TIMEOUT)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class User:
    """One chat user: a connection whose messages a task reads all the time."""

    def __init__(self, name, ws):
        self.name = name
        self.ws = ws
        self.queue = asyncio.Queue()
        self.task = asyncio.create_task(self._read())

    async def _read(self):
        try:
            async for message in self.ws:
                await self.queue.put(message)
        except wsx.ConnectionClosed:
            pass
        finally:
            await self.queue.put(CLOSED)

    async def next(self):
        try:
            message = await asyncio.wait_for(self.queue.get(), TIMEOUT)
        except asyncio.TimeoutError:
            raise AssertionError(f"{self.name}: nothing received within {TIMEOUT:.0f} s") from None
        assert message is not CLOSED, f"{self.name}: connection closed"
        return message

    async def expect(self, want):
        got = await self.next()
        assert got == want, f"{self.name} got {got!r}, expected {want!r}"

    async def say(self, line):
        await asyncio.wait_for(self.ws.send(line), TIMEOUT)

    async def sync(self, room):
        """`/room` is answered only after every earlier line of this user was (messages
        of one client are served in order), and a line is answered only once its
        broadcast was queued on every shard."""
        await self.say("/room")
        await self.expect(f"you are in {room}")

    async def shut(self):
        try:
            await asyncio.wait_for(self.ws.close(), TIMEOUT)
        except Exception:  # noqa: BLE001 - closing is best effort
            pass
        self.task.cancel()


async def main(gateway, control, shards):
    gateway = gateway.rstrip("/")
    control = control.rstrip("/")
    loop = asyncio.get_running_loop()

    async def ctl(method, path, body=b""):
        return await loop.run_in_executor(None, http_call, control, method, path, body)

    async def rooms_of(user):
        status, body = await ctl("GET", f"/{user.name}")
        assert status == 200, f"GET /{user.name}: {status}"
        return json.loads(body)["groups"]

    async def nothing_before_marker(user):
        """A push is queued after anything queued before it: the user's next message is
        the marker only if no chat line was queued for them."""
        marker = f"marker-{uuid.uuid4().hex[:6]}"
        status, _ = await ctl("POST", f"/{user.name}", marker.encode())
        assert status == 200, f"push to {user.name}: {status}"
        got = await user.next()
        assert got == marker, f"{user.name} got {got!r}, but the line was not for them"

    async def connect(name, query=""):
        url = f"{gateway}/{name}" + (f"?{query}" if query else "")
        ws = await asyncio.wait_for(
            websockets.connect(url, open_timeout=TIMEOUT, close_timeout=TIMEOUT, ping_interval=None),
            TIMEOUT + 1,
        )
        return User(name, ws)

    users = {}
    try:
        async def three_users_connect():
            users["alice"] = await connect("alice")  # no query: the default room
            users["bob"] = await connect("bob", "room=lobby")
            users["carol"] = await connect("carol", "room=den")
            for name, room in (("alice", "lobby"), ("bob", "lobby"), ("carol", "den")):
                got = await rooms_of(users[name])
                assert got == [room], f"{name} is in {got}, expected [{room!r}]"
            owners = {shard_of(n, shards) for n in ("alice", "bob")}
            assert owners == set(range(shards)), f"alice and bob should sit on different shards: {owners}"

        async def line_reaches_the_room_only():
            alice, bob, carol = users["alice"], users["bob"], users["carol"]
            await alice.say("hi all")
            await bob.expect("alice: hi all")
            await alice.sync("lobby")
            await nothing_before_marker(alice)  # not echoed to the speaker
            await nothing_before_marker(carol)  # not heard in another room

        async def join_moves_a_user():
            alice, bob, carol = users["alice"], users["bob"], users["carol"]
            await carol.say("/join lobby")
            await carol.expect("you are in lobby")
            got = await rooms_of(carol)
            assert got == ["lobby"], f"carol is in {got} after /join lobby"
            await bob.say("hello carol")
            await alice.expect("bob: hello carol")
            await carol.expect("bob: hello carol")
            # And away again: alice to den no longer hears the lobby.
            await alice.say("/join den")
            await alice.expect("you are in den")
            await bob.say("is alice gone?")
            await carol.expect("bob: is alice gone?")
            await bob.sync("lobby")
            await nothing_before_marker(alice)
            await nothing_before_marker(bob)

        async def bad_room_refused():
            try:
                user = await connect("dave", "room=no%20spaces")
            except wsx.InvalidStatus as e:
                status = e.response.status_code
                assert status == 400, f"expected 400, got {status}"
                return
            await user.shut()
            raise AssertionError("a bad room name was accepted")

        await check("three users connect to their rooms (alice, bob on different shards)", three_users_connect())
        await check("a line reaches the other user in the room, not the speaker nor another room",
                    line_reaches_the_room_only())
        await check("/join moves a user: they get that room's lines, no more the old room's", join_moves_a_user())
        await check("a bad room name is refused with 400", bad_room_refused())
    finally:
        await asyncio.gather(*(u.shut() for u in users.values()), return_exceptions=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gateway", required=True, help="ws://HOST:PORT of ws2api's public listener")
    ap.add_argument("--control", required=True, help="http://HOST:PORT of its control listener")
    ap.add_argument("--shards", type=int, default=2, help="ws2api's --shards")
    args = ap.parse_args()
    print(f"websockets {websockets.__version__}", flush=True)
    try:
        asyncio.run(main(args.gateway, args.control, args.shards))
    except KeyboardInterrupt:
        pass
    finish()
