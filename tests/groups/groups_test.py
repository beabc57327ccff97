#!/usr/bin/env python3
"""Groups checks: real WebSocket clients (the `websockets` package) against two running
ws2api gateways (--shards 2) in front of tests/groups/api.php; see tests/groups/run.sh.

    python3 tests/groups/groups_test.py \\
        --gateway ws://127.0.0.1:7001 --control http://127.0.0.1:7002 \\
        --limits-gateway ws://127.0.0.1:7011 --limits-control http://127.0.0.1:7012 \\
        --limits-outbound 4096 --limits-groups 3 --limits-message-size 65536 \\
        --shards 2 --disconnect-log /tmp/disconnects.jsonl

The main gateway runs with default limits; the limits gateway with the small
--max-outbound-bytes, --max-groups-per-client and --max-message-size given here. One
check per row of SPEC "Groups and broadcast" and "Control headers in the API's
answers". Prints "PASS name" or "FAIL name: why" per check, then "N passed, M failed";
exits 1 if anything failed. Every wait is bounded by a timeout; every poll by a count.
"""

import argparse
import asyncio
import json
import os
import socket
import sys
import time
import urllib.parse
import uuid

import websockets
import websockets.exceptions as wsx

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import checks  # noqa: E402
from checks import check, finish, metric, shard_of, stalled_client  # noqa: E402

TIMEOUT = 5.0  # seconds, for any single wait

# ---- the control listener ----------------------------------------------------------


def http_head_only(base, method, path, content_length):
    """Sends only a request head declaring `content_length` body bytes and reads the
    status line: a gateway that refuses the size answers without reading the body (a
    body it never reads would make its close a reset that can eat the answer)."""
    u = urllib.parse.urlsplit(base)
    with socket.create_connection((u.hostname, u.port), timeout=TIMEOUT) as s:
        s.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: {u.netloc}\r\n"
            f"Content-Type: text/plain\r\nContent-Length: {content_length}\r\n\r\n".encode()
        )
        got = b""
        while b"\r\n" not in got and len(got) < 4096:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
    line = got.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    assert len(parts) >= 2 and parts[1].isdigit(), f"no status line in {got[:80]!r}"
    return int(parts[1])


class Control(checks.Control):
    """The control listener of one gateway, with the routes these checks drive."""

    async def broadcast(self, group, body, except_=None, binary=False):
        path = f"/groups/{group}" + (f"?except={except_}" if except_ else "")
        ctype = "application/octet-stream" if binary else "text/plain; charset=utf-8"
        if isinstance(body, str):
            body = body.encode()
        return await self.json("POST", path, body, ctype)

    async def members(self, group):
        answer = await self.json("GET", f"/groups/{group}")
        assert answer.get("group") == group, f"GET /groups/{group}: wrong group in {answer}"
        return answer.get("members")

    async def info(self, client_id):
        return await self.json("GET", f"/{client_id}")

    async def groups_of(self, client_id):
        groups = (await self.info(client_id)).get("groups")
        assert isinstance(groups, list), f"GET /{client_id}: no \"groups\" list"
        return sorted(groups)

    async def put(self, group, client_id):
        return await self.status("PUT", f"/groups/{group}/{client_id}")

    async def delete(self, group, client_id):
        return await self.status("DELETE", f"/groups/{group}/{client_id}")

    async def push(self, client_id, text):
        status = await self.status("POST", f"/{client_id}", text.encode())
        assert status == 200, f"push to {client_id} answered {status}"



# ---- clients -----------------------------------------------------------------------

CLOSED = object()  # put on a client's queue when its connection is closed


class Client:
    """A `websockets` client whose messages a task reads all the time (so a slow test
    never stalls the gateway's writer) into a queue the checks read from."""

    def __init__(self, client_id, ws):
        self.id = client_id
        self.ws = ws
        self.queue = asyncio.Queue()
        self.close = None  # (code, reason) the gateway sent, once closed
        self.task = asyncio.create_task(self._read())

    async def _read(self):
        try:
            async for message in self.ws:
                await self.queue.put(message)
        except wsx.ConnectionClosed:
            pass
        finally:
            code, reason = self.ws.close_code, self.ws.close_reason
            self.close = (code, reason)
            await self.queue.put(CLOSED)

    async def next(self):
        try:
            message = await asyncio.wait_for(self.queue.get(), TIMEOUT)
        except asyncio.TimeoutError:
            raise AssertionError(f"{self.id}: nothing received within {TIMEOUT:.0f} s") from None
        if message is CLOSED:
            self.queue.put_nowait(CLOSED)
            raise AssertionError(f"{self.id}: closed {self.close} while a message was expected")
        return message

    async def expect(self, want):
        got = await self.next()
        assert got == want, f"{self.id} got {got!r}, expected {want!r}"

    async def expect_closed(self):
        """Waits for the close; returns (code, reason) and the messages before it."""
        before = []
        while True:
            try:
                message = await asyncio.wait_for(self.queue.get(), TIMEOUT)
            except asyncio.TimeoutError:
                raise AssertionError(f"{self.id}: not closed within {TIMEOUT:.0f} s") from None
            if message is CLOSED:
                return self.close, before
            before.append(message)

    async def send(self, message):
        await asyncio.wait_for(self.ws.send(message), TIMEOUT)

    async def ask(self, message):
        """Sends a message, returns the API's answer."""
        await self.send(message)
        return await self.next()

    async def shut(self):
        try:
            await asyncio.wait_for(self.ws.close(), TIMEOUT)
        except Exception:  # noqa: BLE001 - closing is best effort
            pass
        try:
            await asyncio.wait_for(self.task, TIMEOUT)
        except Exception:  # noqa: BLE001
            self.task.cancel()


async def nothing_before_marker(control, client):
    """Pushes a marker through the control listener: it is queued after anything already
    queued for the client, so the client's next message is the marker only if nothing
    (e.g. a broadcast it must not get) was queued before it."""
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    await control.push(client.id, marker)
    got = await client.next()
    assert got == marker, f"{client.id} got {got!r} (it should have got nothing before the marker)"


class Session:
    """The clients of one check; all closed when the check ends, however it ends."""

    def __init__(self, gateway):
        self.gateway = gateway.rstrip("/")
        self.clients = []

    async def connect(self, client_id, query=""):
        url = f"{self.gateway}/{client_id}" + (f"?{query}" if query else "")
        ws = await asyncio.wait_for(
            websockets.connect(
                url, open_timeout=TIMEOUT, close_timeout=TIMEOUT, ping_interval=None, max_queue=None
            ),
            TIMEOUT + 1,
        )
        client = Client(client_id, ws)
        self.clients.append(client)
        return client

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await asyncio.gather(*(c.shut() for c in self.clients), return_exceptions=True)



def read_disconnects(path, client_id):
    try:
        with open(path, encoding="utf-8") as f:
            lines = [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []
    return [d for d in lines if d.get("id") == client_id]


async def poll(what, probe, attempts=50, interval=0.1):
    """Calls `probe` until it returns (True, _): at most `attempts` times, `interval`
    apart (bounded; for effects that are asynchronous by contract, such as a
    connection's leaving its groups after its close). `probe` returns (done, what it saw)."""
    seen = None
    for _ in range(attempts):
        done, seen = await probe()
        if done:
            return seen
        await asyncio.sleep(interval)
    raise AssertionError(f"{what}: not so after {attempts * interval:.0f} s (last seen: {seen!r})")


# ---- the checks --------------------------------------------------------------------


async def main(args):
    shards = args.shards
    run = uuid.uuid4().hex[:6]  # unique names, so an old log line never matches
    gw = args.gateway
    ctl = Control(args.control)
    lgw = args.limits_gateway
    lctl = Control(args.limits_control)
    used = set()

    def cid(tag, shard):
        """A fresh ClientId that the shard function puts on `shard`."""
        for i in range(10_000):
            candidate = f"g{run}-{tag}-{i}"
            if candidate not in used and shard_of(candidate, shards) == shard:
                used.add(candidate)
                return candidate
        raise AssertionError(f"no id for shard {shard}")

    def group(tag):
        return f"{tag}-{run}"

    def q(**params):
        """A query string; list values repeat the key."""
        pairs = []
        for k, v in params.items():
            for one in v if isinstance(v, list) else [v]:
                pairs.append(f"{k}={urllib.parse.quote(one, safe=',')}")
        return "&".join(pairs)

    both = list(range(shards))

    async def shard_function_matches_gateway():
        golden = [("alice", 2, 1), ("bob", 2, 0), ("client-1", 2, 0), ("client-2", 2, 1),
                  ("alice", 16, 7), ("bob", 16, 4), ("client-1", 16, 8), ("client-2", 16, 1)]
        for key, n, owner in golden:
            assert shard_of(key, n) == owner, f"fnv1a64({key!r}) % {n} != {owner}"
        async with Session(gw) as s:
            for shard in both:
                c = await s.connect(cid("shard", shard))
                got = (await ctl.info(c.id)).get("shard")
                assert got == shard, f"GET /{c.id} says shard {got}, the shard function {shard}"

    async def join_via_connect_before_101():
        g = group("conn")
        async with Session(gw) as s:
            members = []
            for shard in both:
                c = await s.connect(cid("conn", shard), q(join=g))
                members.append(c)
                # Right after the 101: the join must already be in place.
                r = await ctl.broadcast(g, f"hello {len(members)}")
                assert r == {"queued": len(members), "full": 0}, f"broadcast after connect {len(members)}: {r}"
                for m in members:
                    await m.expect(f"hello {len(members)}")

    async def connect_answer_repeated_headers_and_lists():
        a, b, c_ = group("ra"), group("rb"), group("rc")
        async with Session(gw) as s:
            for shard in both:
                c = await s.connect(cid("crep", shard), q(join=[f"{a}, {b}", c_]))
                got = await ctl.groups_of(c.id)
                assert got == sorted([a, b, c_]), f"{c.id} is in {got}"

    async def connect_answer_joins_before_leaves():
        x, keep = group("cx"), group("ckeep")
        async with Session(gw) as s:
            for shard in both:
                c = await s.connect(cid("cjl", shard), q(join=f"{x},{keep}", leave=x))
                got = await ctl.groups_of(c.id)
                assert got == [keep], f"{c.id} is in {got}, expected only {keep} (join {x} then leave it)"

    async def join_via_message_answer_before_body():
        g = group("msg")
        async with Session(gw) as s:
            members = []
            for shard in both:
                c = await s.connect(cid("mjoin", shard))
                answer = await c.ask(f"/join {g}")
                assert answer == f"joined {g}", f"answer {answer!r}"
                members.append(c)
                # The answer body came after the join took effect.
                r = await ctl.broadcast(g, "after answer")
                assert r == {"queued": len(members), "full": 0}, f"broadcast after /join: {r}"
                for m in members:
                    await m.expect("after answer")

    async def message_answer_repeated_headers_and_lists():
        a, b, c_ = group("ma"), group("mb"), group("mc")
        async with Session(gw) as s:
            for shard in both:
                c = await s.connect(cid("mrep", shard))
                assert await c.ask(f"/repeat {a} | {b}, {c_}") == "repeated"
                got = await ctl.groups_of(c.id)
                assert got == sorted([a, b, c_]), f"{c.id} is in {got}"

    async def leave_via_message_answer():
        g1, g2 = group("ml1"), group("ml2")
        async with Session(gw) as s:
            for shard in both:
                c = await s.connect(cid("mleave", shard), q(join=f"{g1},{g2}"))
                assert await c.ask(f"/leave {g1}") == f"left {g1}"
                got = await ctl.groups_of(c.id)
                assert got == [g2], f"{c.id} is in {got} after leaving {g1}"
                r = await ctl.broadcast(g1, "not for you")
                assert r == {"queued": 0, "full": 0}, f"broadcast to the group left: {r}"
                await nothing_before_marker(ctl, c)

    async def message_answer_joins_before_leaves():
        x, y, keep = group("mx"), group("my"), group("mkeep")
        async with Session(gw) as s:
            for shard in both:
                c = await s.connect(cid("mjl", shard), q(join=keep))
                assert await c.ask(f"/both {x}, {y} | {x}") == "both"
                got = await ctl.groups_of(c.id)
                assert got == sorted([keep, y]), f"{c.id} is in {got}, expected {sorted([keep, y])} (join {x}, {y} then leave {x})"

    async def non_2xx_answer_headers_ignored():
        g = group("fail")
        async with Session(gw) as s:
            for shard in both:
                c = await s.connect(cid("fail", shard))
                await c.send(f"/fail {g}")  # a 500: its body is not sent, its headers ignored
                assert await c.ask("ping") == "echo: ping"  # messages are answered in order
                got = await ctl.groups_of(c.id)
                assert got == [], f"{c.id} is in {got} after a 500 answer with X-Group-Join"

    async def put_joins():
        g = group("put")
        async with Session(gw) as s:
            members = []
            for shard in both:
                c = await s.connect(cid("put", shard))
                members.append(c)
                for attempt in ("first", "again"):
                    status = await ctl.put(g, c.id)
                    assert status == 200, f"PUT /groups/{g}/{c.id} ({attempt}) answered {status}"
                assert await ctl.groups_of(c.id) == [g]
            r = await ctl.broadcast(g, "to the put members")
            assert r == {"queued": len(members), "full": 0}, f"broadcast: {r}"
            for m in members:
                await m.expect("to the put members")

    async def delete_leaves():
        g, other = group("del"), group("delother")
        async with Session(gw) as s:
            for shard in both:
                c = await s.connect(cid("del", shard), q(join=f"{g},{other}"))
                for attempt in ("first", "again (not a member)"):
                    status = await ctl.delete(g, c.id)
                    assert status == 200, f"DELETE /groups/{g}/{c.id} ({attempt}) answered {status}"
                assert await ctl.groups_of(c.id) == [other]
                r = await ctl.broadcast(g, "gone")
                assert r == {"queued": 0, "full": 0}, f"broadcast after DELETE: {r}"
                await nothing_before_marker(ctl, c)

    async def broadcast_counts_members_on_both_shards():
        g = group("bc")
        async with Session(gw) as s:
            members = [await s.connect(cid("bc", shard), q(join=g)) for shard in both for _ in range(2)]
            outsider = await s.connect(cid("bcout", 0))
            r = await ctl.broadcast(g, "to all four")
            assert r == {"queued": 4, "full": 0}, f"answer {r}, expected 4 queued"
            for m in members:
                await m.expect("to all four")
            await nothing_before_marker(ctl, outsider)

    async def broadcast_except():
        g = group("ex")
        async with Session(gw) as s:
            members = [await s.connect(cid("ex", shard), q(join=g)) for shard in both for _ in range(2)]
            for skipped in (members[0], members[-1]):  # one on each shard
                r = await ctl.broadcast(g, f"not for {skipped.id}", except_=skipped.id)
                assert r == {"queued": 3, "full": 0}, f"except={skipped.id}: answer {r}"
                for m in members:
                    if m is not skipped:
                        await m.expect(f"not for {skipped.id}")
                await nothing_before_marker(ctl, skipped)

    async def broadcast_except_non_member_ignored():
        g = group("exn")
        async with Session(gw) as s:
            members = [await s.connect(cid("exn", shard), q(join=g)) for shard in both]
            outsider = await s.connect(cid("exnout", 1))
            for nobody in (outsider.id, f"g{run}-never-connected"):
                r = await ctl.broadcast(g, "everyone", except_=nobody)
                assert r == {"queued": 2, "full": 0}, f"except={nobody}: answer {r}"
                for m in members:
                    await m.expect("everyone")
            await nothing_before_marker(ctl, outsider)

    async def get_group_counts_both_shards():
        g = group("cnt")
        async with Session(gw) as s:
            clients = [await s.connect(cid("cnt", shard), q(join=g)) for shard in both for _ in range(2)]
            n = await ctl.members(g)
            assert n == 4, f"GET /groups/{g} members {n}, expected 4"
            assert await ctl.delete(g, clients[0].id) == 200
            n = await ctl.members(g)
            assert n == 3, f"after a DELETE: members {n}, expected 3"
            n = await ctl.members(group("nobody-here"))
            assert n == 0, f"a group without members: {n}"

    async def info_lists_groups():
        a, b, c_ = group("ia"), group("ib"), group("ic")
        async with Session(gw) as s:
            for shard in both:
                c = await s.connect(cid("info", shard), q(join=a))
                assert await ctl.put(b, c.id) == 200
                assert await c.ask(f"/join {c_}") == f"joined {c_}"
                got = await ctl.groups_of(c.id)
                assert got == sorted([a, b, c_]), f"{c.id}: groups {got}"
                assert await ctl.delete(b, c.id) == 200
                got = await ctl.groups_of(c.id)
                assert got == sorted([a, c_]), f"{c.id} after DELETE {b}: groups {got}"

    async def everyone_count_and_broadcast():
        async with Session(gw) as s:
            clients = [await s.connect(cid("all", shard)) for shard in both for _ in range(2)]
            # Clients of earlier checks leave the table once their close is done; wait
            # (bounded) until only ours are left.
            async def only_ours():
                n = await ctl.members("*")
                return n == len(clients), n

            await poll("GET /groups/* == open clients", only_ours)
            r = await ctl.broadcast("*", "to everyone")
            assert r == {"queued": len(clients), "full": 0}, f"POST /groups/*: {r}"
            for c in clients:
                await c.expect("to everyone")
            for c in clients:  # the joined groups do not matter to `*`
                assert await ctl.put(group("x"), c.id) == 200
            assert await ctl.members("*") == len(clients)

    async def successive_broadcasts_in_order():
        g = group("order")
        count = 50
        async with Session(gw) as s:
            members = [await s.connect(cid("order", shard), q(join=g)) for shard in both for _ in range(2)]
            for i in range(count):
                r = await ctl.broadcast(g, f"seq-{i}")
                assert r == {"queued": len(members), "full": 0}, f"broadcast {i}: {r}"
            for m in members:
                got = [await m.next() for _ in range(count)]
                want = [f"seq-{i}" for i in range(count)]
                assert got == want, f"{m.id} got them as {got[:5]}... (first difference at {next(i for i, (a, b) in enumerate(zip(got, want)) if a != b)})"

    async def binary_and_text_broadcasts():
        g = group("bin")
        data = bytes([0, 1, 2, 0xFE, 0xFF])
        async with Session(gw) as s:
            members = [await s.connect(cid("bin", shard), q(join=g)) for shard in both]
            r = await ctl.broadcast(g, data, binary=True)
            assert r["queued"] == 2, f"binary broadcast: {r}"
            r = await ctl.broadcast(g, "text ünïcode")
            assert r["queued"] == 2, f"text broadcast: {r}"
            for m in members:
                got = await m.next()
                assert isinstance(got, bytes) and got == data, f"{m.id}: binary broadcast arrived as {got!r}"
                got = await m.next()
                assert isinstance(got, str) and got == "text ünïcode", f"{m.id}: text broadcast arrived as {got!r}"

    async def replacement_starts_in_no_group():
        g, other = group("rep"), group("repnew")
        async with Session(gw) as s:
            for shard in both:
                same = cid("rep", shard)
                first = await s.connect(same, q(join=g))
                assert await ctl.put(group("rep2"), same) == 200
                second = await s.connect(same, q(join=other))
                (code, reason), _ = await first.expect_closed()
                assert code == 4000, f"first connection closed with {code} {reason!r}, expected 4000"
                got = await ctl.groups_of(same)
                assert got == [other], f"replacement is in {got}, expected only {other}"
                assert await ctl.members(g) == 0, f"{g} still has members"
                r = await ctl.broadcast(g, "old group")
                assert r == {"queued": 0, "full": 0}, f"broadcast to the old connection's group: {r}"
                await nothing_before_marker(ctl, second)

    async def closed_connection_leaves_groups():
        a, b = group("cla"), group("clb")
        async with Session(gw) as s:
            clients = [await s.connect(cid("closed", shard), q(join=f"{a},{b}")) for shard in both]
            assert await ctl.members(a) == 2
            for c in clients:
                await c.shut()

            async def empty():
                counts = (await ctl.members(a), await ctl.members(b))
                return counts == (0, 0), counts

            await poll(f"{a} and {b} empty after their members closed", empty)
            for c in clients:
                assert await ctl.status("GET", f"/{c.id}") == 404

    async def close_code_in_answer():
        async with Session(gw) as s:
            for shard in both:
                c = await s.connect(cid("close", shard))
                await c.send("/close 4001 bye now")
                (code, reason), before = await c.expect_closed()
                assert before == ["closing"], f"before the close frame {c.id} got {before!r}, expected ['closing']"
                assert (code, reason) == (4001, "bye now"), f"close frame {code} {reason!r}, expected 4001 'bye now'"

                async def disconnect():
                    seen = read_disconnects(args.disconnect_log, c.id)
                    return bool(seen), seen

                seen = await poll(f"Disconnect of {c.id} in the API log", disconnect)
                assert len(seen) == 1, f"{len(seen)} Disconnects for {c.id}: {seen}"
                d = seen[0]
                assert (d["code"], d["reason"]) == ("4001", "bye now"), f"Disconnect had X-Close-Code {d['code']!r}, body {d['reason']!r}"

    async def close_code_without_body():
        async with Session(gw) as s:
            c = await s.connect(cid("closeq", 0))
            await c.send("/closequiet 4002 quiet")
            (code, reason), before = await c.expect_closed()
            assert before == [], f"an empty answer body, yet {c.id} got {before!r}"
            assert (code, reason) == (4002, "quiet"), f"close frame {code} {reason!r}"

    async def close_code_not_sendable_ignored():
        async with Session(gw) as s:
            c = await s.connect(cid("closebad", 1))
            for code in ("1005", "1006", "1015", "1010", "999", "5000", "abc"):
                answer = await c.ask(f"/close {code} nope")
                assert answer == "closing", f"answer {answer!r}"
                answer = await c.ask("still open?")
                assert answer == "echo: still open?", f"after X-Close-Code {code}: {answer!r}"
            assert c.close is None, f"closed: {c.close}"

    async def bad_group_name_400():
        target = cid("badname", 0)
        async with Session(gw) as s:
            await s.connect(target)
            for name in ("bad!name", "a%20b", "x" * 129, "caf%C3%A9"):
                for method, path in (
                    ("PUT", f"/groups/{name}/{target}"),
                    ("POST", f"/groups/{name}"),
                    ("GET", f"/groups/{name}"),
                ):
                    status = await ctl.status(method, path, b"x" if method == "POST" else b"")
                    assert status == 400, f"{method} {path[:60]} answered {status}, expected 400"
            for method in ("POST", "GET"):
                status = await ctl.status(method, "/groups/", b"")
                assert status == 400, f"{method} /groups/ (empty name) answered {status}"
            longest = "y" * 128  # the longest good name is fine
            assert await ctl.put(longest, target) == 200
            assert await ctl.members(longest) == 1

    async def everyone_in_put_delete_400():
        async with Session(gw) as s:
            c = await s.connect(cid("star", 1))
            for method in ("PUT", "DELETE"):
                status = await ctl.status(method, f"/groups/*/{c.id}")
                assert status == 400, f"{method} /groups/*/{c.id} answered {status}, expected 400"

    async def unknown_client_404():
        nobody = f"g{run}-nobody"
        for method in ("PUT", "DELETE"):
            status = await ctl.status(method, f"/groups/{group('u')}/{nobody}")
            assert status == 404, f"{method} for a client not connected answered {status}, expected 404"
        status = await ctl.status("GET", f"/{nobody}")
        assert status == 404, f"GET /{nobody} answered {status}"

    async def body_over_max_message_size_413():
        g = group("big")
        limit = args.limits_message_size
        loop = asyncio.get_running_loop()
        for base, size in ((lctl.base, limit), (ctl.base, 1 << 20)):
            status = await loop.run_in_executor(
                None, http_head_only, base, "POST", f"/groups/{g}", size + 1
            )
            assert status == 413, f"POST /groups/{g} declaring {size + 1} bytes to {base}: {status}, expected 413"
        # Exactly the limit is fine.
        r = await lctl.broadcast(g, b"z" * limit)
        assert r == {"queued": 0, "full": 0}, f"a body of exactly {limit} bytes: {r}"

    async def metrics_sane():
        a, b = group("meta"), group("metb")

        def per_shard(m, name, **labels):
            values = metric(m, name, **labels)
            for shard in both:
                assert str(shard) in values, f"{name}{labels or ''} has no shard=\"{shard}\" series"
                v = values[str(shard)]
                assert v >= 0 and v == int(v), f"{name} shard {shard} = {v}"
            return [values[str(shard)] for shard in both]

        async with Session(gw) as s:
            # Wait (bounded) until the groups of earlier checks are gone with their clients.
            async def no_groups():
                left = per_shard(await ctl.metrics(), "ws2api_group_memberships")
                return sum(left) == 0, left

            await poll("no memberships left from earlier checks", no_groups)
            m0 = await ctl.metrics()
            assert per_shard(m0, "ws2api_groups") == [0] * shards, "groups left without members"
            c0 = await s.connect(cid("met", 0), q(join=f"{a},{b}"))
            c1 = await s.connect(cid("met", 1), q(join=a))
            m1 = await ctl.metrics()
            assert per_shard(m1, "ws2api_groups") == [2, 1], f"ws2api_groups {per_shard(m1, 'ws2api_groups')}, expected [2, 1]"
            assert per_shard(m1, "ws2api_group_memberships") == [2, 1], f"ws2api_group_memberships {per_shard(m1, 'ws2api_group_memberships')}, expected [2, 1]"
            r = await ctl.broadcast(a, "counted")
            assert r == {"queued": 2, "full": 0}
            for c in (c0, c1):
                await c.expect("counted")
            m2 = await ctl.metrics()
            bc = [y - x for x, y in zip(per_shard(m1, "ws2api_broadcasts_total"), per_shard(m2, "ws2api_broadcasts_total"))]
            assert all(d in (0, 1) for d in bc) and sum(bc) >= 1, f"ws2api_broadcasts_total grew by {bc} for one broadcast"
            dq = [y - x for x, y in zip(per_shard(m1, "ws2api_broadcast_deliveries_total", outcome="queued"),
                                        per_shard(m2, "ws2api_broadcast_deliveries_total", outcome="queued"))]
            assert dq == [1, 1], f"deliveries{{outcome=queued}} grew by {dq}, expected [1, 1]"
            df = [y - x for x, y in zip(per_shard(m1, "ws2api_broadcast_deliveries_total", outcome="full"),
                                        per_shard(m2, "ws2api_broadcast_deliveries_total", outcome="full"))]
            assert df == [0, 0], f"deliveries{{outcome=full}} grew by {df}"

    # ---- the limits gateway --------------------------------------------------------

    async def cap_put_409():
        cap = args.limits_groups
        names = [group(f"cap{i}") for i in range(cap + 1)]
        async with Session(lgw) as s:
            for shard in both:
                c = await s.connect(cid("cap", shard))
                for name in names[:cap]:
                    assert await lctl.put(name, c.id) == 200, f"PUT {name} under the cap"
                status = await lctl.put(names[cap], c.id)
                assert status == 409, f"PUT number {cap + 1} answered {status}, expected 409"
                status = await lctl.put(names[0], c.id)
                assert status == 200, f"PUT of a group already joined, at the cap: {status}, expected 200"
                got = await lctl.groups_of(c.id)
                assert got == sorted(names[:cap]), f"groups {got}"

    async def skipped(control):
        return sum(metric(await control.metrics(), "ws2api_group_names_skipped_total").values())

    async def connect_answer_skips_bad_star_and_over_cap():
        cap = args.limits_groups
        good = [group(f"cs{i}") for i in range(cap + 1)]
        async with Session(lgw) as s:
            for shard in both:
                before = await skipped(lctl)
                joins = ",".join([good[0], "bad!name", "*"] + good[1:])
                c = await s.connect(cid("cskip", shard), q(join=joins))
                got = await lctl.groups_of(c.id)
                assert got == sorted(good[:cap]), f"groups {got}, expected {sorted(good[:cap])}"
                delta = await skipped(lctl) - before
                assert delta == 3, f"ws2api_group_names_skipped_total grew by {delta}, expected 3 (bad, *, one over the cap)"

    async def message_answer_skips_bad_star_and_over_cap():
        a, b, c_, d = (group(f"ms{x}") for x in "abcd")
        assert args.limits_groups == 3, "this check assumes --max-groups-per-client 3"
        async with Session(lgw) as s:
            for shard in both:
                c = await s.connect(cid("mskip", shard), q(join=f"{a},{b}"))
                before = await skipped(lctl)
                # joins first: bad (skip), * (skip), c joins (3 of 3), d over the cap (skip);
                # then leaves: a leaves, * (skip).
                assert await c.ask(f"/both bad!name, *, {c_}, {d} | {a}, *") == "both"
                got = await lctl.groups_of(c.id)
                assert got == sorted([b, c_]), f"groups {got}, expected {sorted([b, c_])}"
                delta = await skipped(lctl) - before
                assert delta == 4, f"ws2api_group_names_skipped_total grew by {delta}, expected 4"

    async def full_member_skipped_and_counted():
        g = group("full")
        payload_size = args.limits_outbound * 3 // 4  # below the limit: a reading member never counts as full
        loop = asyncio.get_running_loop()
        stalled_id = cid("stalled", 0)
        before = await lctl.metrics()
        sock, _ = await loop.run_in_executor(None, stalled_client, lgw, f"{stalled_id}?{q(join=g)}", 2048)
        try:
            async with Session(lgw) as s:
                readers = [await s.connect(cid("reader", shard), q(join=g)) for shard in both]
                sent = 0
                full_at = None
                for i in range(400):  # bounded: kernel buffers of the stalled socket hold ~50 KiB
                    body = f"b{i:04d}-" + "x" * payload_size
                    r = await lctl.broadcast(g, body)
                    sent += 1
                    if r["full"] >= 1:
                        assert r == {"queued": len(readers), "full": 1}, f"broadcast {i}: {r}"
                        full_at = i
                        break
                    assert r == {"queued": len(readers) + 1, "full": 0}, f"broadcast {i}: {r}"
                assert full_at is not None, f"{sent} broadcasts, and the stalled member was never full"
                for m in readers:
                    for i in range(sent):
                        got = await m.next()
                        assert got.startswith(f"b{i:04d}-"), f"{m.id}: broadcast {i} arrived as {got[:8]!r}"
                after = await lctl.metrics()
                grew = sum(metric(after, "ws2api_broadcast_deliveries_total", outcome="full").values()) - sum(
                    metric(before, "ws2api_broadcast_deliveries_total", outcome="full").values())
                assert grew >= 1, f"deliveries{{outcome=full}} grew by {grew}"
                print(f"  (stalled member full after {sent} broadcasts of {payload_size} B)", flush=True)
        finally:
            sock.close()

    # The main gateway.
    await check("ClientIds cover both shards (FNV-1a 64 agrees with GET /<id>)", shard_function_matches_gateway())
    await check("join via Connect answer takes effect before the 101", join_via_connect_before_101())
    await check("Connect answer: repeated X-Group-Join headers and comma lists", connect_answer_repeated_headers_and_lists())
    await check("Connect answer: joins apply before leaves", connect_answer_joins_before_leaves())
    await check("join via Message answer takes effect before its body", join_via_message_answer_before_body())
    await check("Message answer: repeated X-Group-Join headers and comma lists", message_answer_repeated_headers_and_lists())
    await check("leave via Message answer", leave_via_message_answer())
    await check("Message answer: joins apply before leaves", message_answer_joins_before_leaves())
    await check("headers of a non-2xx answer are ignored", non_2xx_answer_headers_ignored())
    await check("PUT /groups/<g>/<id> joins (200, again 200)", put_joins())
    await check("DELETE /groups/<g>/<id> leaves (200, again 200)", delete_leaves())
    await check("POST /groups/<g> queues for members on both shards", broadcast_counts_members_on_both_shards())
    await check("POST /groups/<g>?except=<id> skips that member", broadcast_except())
    await check("except naming no member is ignored", broadcast_except_non_member_ignored())
    await check("GET /groups/<g> counts members over both shards", get_group_counts_both_shards())
    await check("GET /<ClientId> lists its groups", info_lists_groups())
    await check("GET and POST /groups/* count and reach every client", everyone_count_and_broadcast())
    await check("50 successive broadcasts arrive in order at every member", successive_broadcasts_in_order())
    await check("binary broadcast arrives as binary, text as text", binary_and_text_broadcasts())
    await check("replacement starts in no group (the first gets 4000)", replacement_starts_in_no_group())
    await check("a closed connection leaves all its groups", closed_connection_leaves_groups())
    await check("X-Close-Code 4001 + X-Close-Reason: body, close frame, Disconnect", close_code_in_answer())
    await check("X-Close-Code with an empty body closes at once", close_code_without_body())
    await check("X-Close-Code a server may not send is ignored", close_code_not_sendable_ignored())
    await check("bad group name is 400 (PUT, POST, GET)", bad_group_name_400())
    await check("* in PUT/DELETE is 400", everyone_in_put_delete_400())
    await check("unknown client is 404 (PUT, DELETE)", unknown_client_404())
    await check("body over --max-message-size is 413", body_over_max_message_size_413())
    await check("metrics: groups, memberships, broadcasts, deliveries", metrics_sane())
    # The limits gateway.
    await check("--max-groups-per-client: the join over the cap is 409", cap_put_409())
    await check("Connect answer: bad, * and over-cap names skipped and counted, the rest applies",
                connect_answer_skips_bad_star_and_over_cap())
    await check("Message answer: bad, * and over-cap names skipped and counted, the rest applies",
                message_answer_skips_bad_star_and_over_cap())
    await check("a member with a full queue is skipped and counted in full", full_member_skipped_and_counted())


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gateway", required=True, help="ws://HOST:PORT of the main gateway")
    ap.add_argument("--control", required=True, help="http://HOST:PORT of its control listener")
    ap.add_argument("--limits-gateway", required=True, help="ws://HOST:PORT of the limits gateway")
    ap.add_argument("--limits-control", required=True, help="http://HOST:PORT of its control listener")
    ap.add_argument("--limits-outbound", type=int, required=True, help="its --max-outbound-bytes")
    ap.add_argument("--limits-groups", type=int, required=True, help="its --max-groups-per-client")
    ap.add_argument("--limits-message-size", type=int, required=True, help="its --max-message-size")
    ap.add_argument("--shards", type=int, default=2, help="--shards of both gateways")
    ap.add_argument("--disconnect-log", required=True, help="the JSON-lines file api.php appends Disconnects to")
    args = ap.parse_args()
    checks.run_checks(main, args, f"websockets {websockets.__version__}")
