#!/usr/bin/env python3
"""Edge limits checks (SPEC "Limits for a public edge"): real WebSocket clients (the
`websockets` package) and raw-socket clients against six running ws2api gateways
(--shards 2 --ping-interval 0s) in front of tests/edge/api.php; see tests/edge/run.sh.

    python3 tests/edge/edge_test.py \\
        --origins ws://127.0.0.1:7001 --origins-control http://127.0.0.1:7002 \\
        --ipcap ws://127.0.0.1:7011 --ipcap-control http://127.0.0.1:7012 \\
        --connrate ws://127.0.0.1:7021 --connrate-control http://127.0.0.1:7022 \\
        --msgrate ws://127.0.0.1:7031 --msgrate-control http://127.0.0.1:7032 \\
        --budget ws://127.0.0.1:7041 --budget-control http://127.0.0.1:7042 \\
        --table ws://127.0.0.1:7051 --table-control http://127.0.0.1:7052 \\
        --budget-outbound 65536 --budget-total 262144 \\
        --shards 2 --api-log /tmp/api.jsonl --ws2api-bin target/release/ws2api

The gateways' limits (as run.sh starts them):
    origins   --allowed-origins "https://app.example.com,https://*.example.org,http://localhost:8080"
    ipcap     --max-connections-per-ip 3 --connect-rate-per-ip 5
    connrate  --connect-rate-per-ip 5
    msgrate   --max-message-rate 20
    budget    --max-outbound-bytes 64KiB --max-outbound-total 256KiB
    table     --max-tracked-ips 2 --max-connections-per-ip 10 (one address per shard)

api.php logs every request it gets (one JSON line each) to --api-log: "no API request"
for a refused upgrade is checked there, by a ClientId used for nothing else. Clients
bind source addresses 127.0.0.2 ... 127.0.0.13 (all of 127.0.0.0/8 is on lo) to stand
for distinct hosts. Prints "PASS name" or "FAIL name: why" per check, then
"N passed, M failed"; exits 1 if anything failed. Every wait is bounded by a timeout;
every poll by a count.
"""

import argparse
import asyncio
import json
import os
import struct
import subprocess
import sys
import time
import urllib.parse
import uuid

import websockets
import websockets.exceptions as wsx

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import checks  # noqa: E402
from checks import check, finish, metric, note, shard_of, stalled_client  # noqa: E402

TIMEOUT = 5.0  # seconds, for any single wait

# ---- the control listener ----------------------------------------------------------


class Control(checks.Control):
    """The control listener of one gateway, with the routes these checks drive."""

    async def push(self, client_id, body):
        """POST /<ClientId>: the status."""
        if isinstance(body, str):
            body = body.encode()
        status, _, _ = await self.call("POST", f"/{client_id}", body, "text/plain; charset=utf-8")
        return status

    async def info(self, client_id):
        return await self.json("GET", f"/{client_id}")

    async def readyz(self):
        status, _, _ = await self.call("GET", "/readyz")
        return status


REASONS = ("origin", "ip_connections", "ip_rate", "ip_table_full", "outbound_budget")


async def refused(control):
    """{reason: ws2api_refused_total summed over shards}; every reason must be shown."""
    m = await control.metrics()
    out = {}
    for reason in REASONS:
        values = metric(m, "ws2api_refused_total", reason=reason)
        assert values, f"/metrics has no ws2api_refused_total{{reason=\"{reason}\"}}"
        out[reason] = sum(values.values())
    return out


def delta(before, after):
    return {k: after[k] - before[k] for k in before}


# ---- the API server's log ----------------------------------------------------------


class ApiLog:
    def __init__(self, path):
        self.path = path

    def requests(self, client_id=None, method=None):
        try:
            with open(self.path, encoding="utf-8") as f:
                lines = [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []
        return [
            r for r in lines
            if (client_id is None or r.get("id") == client_id)
            and (method is None or r.get("method") == method)
        ]

    def assert_untouched(self, client_ids):
        """No request at all reached the API for any of these ClientIds."""
        for client_id in client_ids:
            got = self.requests(client_id)
            assert not got, (
                f"refused upgrade {client_id} reached the API: "
                + ", ".join(f"{r['method']} {r['id']}" for r in got)
            )


async def poll(what, probe, attempts=50, interval=0.1):
    """Calls `probe` until it returns (True, _): at most `attempts` times, `interval`
    apart. `probe` returns (done, what it saw)."""
    seen = None
    for _ in range(attempts):
        done, seen = await probe()
        if done:
            return seen
        await asyncio.sleep(interval)
    raise AssertionError(f"{what}: not so after {attempts * interval:.1f} s (last seen: {seen!r})")


# ---- WebSocket clients -------------------------------------------------------------


def refusal_of(e):
    """(status, headers) of a refused upgrade, from either websockets API generation;
    None if `e` is no refusal."""
    invalid_status = getattr(wsx, "InvalidStatus", None)
    if invalid_status is not None and isinstance(e, invalid_status):
        return e.response.status_code, e.response.headers
    invalid_status_code = getattr(wsx, "InvalidStatusCode", None)
    if invalid_status_code is not None and isinstance(e, invalid_status_code):
        return e.status_code, e.headers
    return None


class Upgrade:
    """The outcome of one upgrade attempt: `ws` (accepted) or `status`/`headers`."""

    def __init__(self, client_id, ws=None, status=101, headers=None):
        self.id = client_id
        self.ws = ws
        self.status = status
        self.headers = headers or {}

    @property
    def accepted(self):
        return self.ws is not None

    def retry_after(self):
        value = self.headers.get("Retry-After")
        return None if value is None else str(value)

    def __repr__(self):
        if self.accepted:
            return f"<{self.id}: 101>"
        return f"<{self.id}: {self.status} Retry-After={self.retry_after()}>"


class Session:
    """The connections of one check; all closed when the check ends, however it ends."""

    def __init__(self, gateway):
        self.gateway = gateway.rstrip("/")
        self.open = []

    async def attempt(self, client_id, origin=None, source=None):
        """Tries one upgrade; a refusal (any non-101 status) is returned, not raised."""
        kwargs = dict(open_timeout=TIMEOUT, close_timeout=TIMEOUT, ping_interval=None, max_queue=None)
        if origin is not None:
            kwargs["origin"] = origin
        if source is not None:
            kwargs["local_addr"] = (source, 0)
        try:
            ws = await asyncio.wait_for(
                websockets.connect(f"{self.gateway}/{client_id}", **kwargs), TIMEOUT + 1
            )
        except Exception as e:  # noqa: BLE001 - sorted below
            r = refusal_of(e)
            if r is None:
                raise
            return Upgrade(client_id, status=r[0], headers=r[1])
        self.open.append(ws)
        return Upgrade(client_id, ws=ws)

    async def connect(self, client_id, origin=None, source=None):
        """An upgrade that must be accepted; returns the connection."""
        u = await self.attempt(client_id, origin=origin, source=source)
        assert u.accepted, f"upgrade {client_id} (origin {origin}, from {source or 'default'}) refused with {u.status}"
        return u.ws

    async def close(self, ws):
        try:
            await asyncio.wait_for(ws.close(), TIMEOUT)
        finally:
            if ws in self.open:
                self.open.remove(ws)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await asyncio.gather(*(asyncio.wait_for(ws.close(), TIMEOUT) for ws in self.open),
                             return_exceptions=True)
        self.open.clear()


async def recv(ws, what):
    try:
        return await asyncio.wait_for(ws.recv(), TIMEOUT)
    except asyncio.TimeoutError:
        raise AssertionError(f"{what}: nothing received within {TIMEOUT:.0f} s") from None
    except wsx.ConnectionClosed as e:
        raise AssertionError(f"{what}: connection closed ({e})") from None


# ---- raw clients that stop reading -------------------------------------------------



def read_frames(sock, pending, count, deadline_s):
    """Reads `count` server frames (unmasked) from a raw client socket; returns their
    payloads (opcode 1 or 2 only; anything else fails)."""
    buf = bytearray(pending)
    out = []
    deadline = time.monotonic() + deadline_s

    def need(n):
        while len(buf) < n:
            left = deadline - time.monotonic()
            assert left > 0, f"read {len(out)} of {count} frames within {deadline_s:.0f} s"
            sock.settimeout(left)
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {len(out)} of {count} frames"
            buf.extend(chunk)

    while len(out) < count:
        need(2)
        opcode, length = buf[0] & 0x0F, buf[1] & 0x7F
        assert buf[1] & 0x80 == 0, "a server frame is masked"
        at = 2
        if length == 126:
            need(4)
            length, at = struct.unpack(">H", bytes(buf[2:4]))[0], 4
        elif length == 127:
            need(10)
            length, at = struct.unpack(">Q", bytes(buf[2:10]))[0], 10
        need(at + length)
        assert opcode in (1, 2), f"frame {len(out)}: opcode {opcode}"
        out.append(bytes(buf[at:at + length]))
        del buf[:at + length]
    return out


# ---- the checks --------------------------------------------------------------------


async def main(args):
    shards = args.shards
    run = uuid.uuid4().hex[:6]  # unique ClientIds, so an old log line never matches
    api = ApiLog(args.api_log)
    refused_ids = []  # every ClientId whose upgrade was refused: the API never saw it
    used = set()

    def cid(tag, shard=None):
        """A fresh ClientId (on `shard`, when given)."""
        for i in range(10_000):
            candidate = f"e{run}-{tag}-{i}"
            if candidate in used or (shard is not None and shard_of(candidate, shards) != shard):
                continue
            used.add(candidate)
            return candidate
        raise AssertionError(f"no id for shard {shard}")

    async def expect_refused(session, client_id, status, what, **kwargs):
        u = await session.attempt(client_id, **kwargs)
        assert not u.accepted, f"{what}: upgrade {client_id} was accepted, expected {status}"
        assert u.status == status, f"{what}: upgrade {client_id} answered {u.status}, expected {status}"
        refused_ids.append(client_id)
        return u

    # ---- 1: --allowed-origins --------------------------------------------------------

    async def origins():
        gw, ctl = args.origins, Control(args.origins_control)
        before = await refused(ctl)
        allowed = [
            ("exact", "https://app.example.com"),
            ("host case-insensitive, default port explicit", "https://APP.example.com:443"),
            ("scheme case-insensitive", "HTTPS://app.example.com"),
            ("wildcard, two levels below", "https://a.b.example.org"),
            ("wildcard, default port explicit", "https://x.example.org:443"),
            ("wildcard, host case-insensitive", "https://A.B.Example.ORG"),
            ("exact with port", "http://localhost:8080"),
            ("no Origin header", None),
        ]
        denied = [
            ("the wildcard's own domain", "https://example.org"),
            ("suffix trick", "https://example.org.evil.test"),
            ("other site", "https://evil.test"),
            ("wrong port", "http://localhost:8081"),
            ("wrong scheme", "http://app.example.com"),
            ("non-default port", "https://app.example.com:8443"),
            ("not a subdomain, only a suffix", "https://badexample.org"),
            ("opaque origin", "null"),
        ]
        async with Session(gw) as s:
            for i, (what, origin) in enumerate(allowed):
                client_id = cid(f"oko{i}", i % shards)
                ws = await s.connect(client_id, origin=origin)
                got = api.requests(client_id, "GET")
                assert len(got) == 1, f"{what}: {len(got)} Connect requests for {client_id}"
                assert got[0]["origin"] == origin, (
                    f"{what}: the API's Connect saw Origin {got[0]['origin']!r}, expected {origin!r}")
                await s.close(ws)
            for i, (what, origin) in enumerate(denied):
                await expect_refused(s, cid(f"ono{i}", i % shards), 403, f"Origin {origin} ({what})",
                                     origin=origin)
        after = await refused(ctl)
        d = delta(before, after)
        assert d["origin"] == len(denied), (
            f"ws2api_refused_total{{reason=\"origin\"}} grew by {d['origin']}, expected {len(denied)}")
        assert all(v == 0 for k, v in d.items() if k != "origin"), f"other refusal reasons grew: {d}"
        api.assert_untouched(refused_ids)

    # ---- 2: --max-connections-per-ip ---------------------------------------------------

    async def per_ip_cap():
        gw, ctl = args.ipcap, Control(args.ipcap_control)
        before = await refused(ctl)
        cap_refusals = 0
        async with Session(gw) as s:
            ids = [cid("cap", i % shards) for i in range(3)]  # both shards: the count is the address's
            held = [await s.connect(client_id, source="127.0.0.2") for client_id in ids]
            got = api.requests(ids[0], "GET")
            assert got and got[0]["xff"] and got[0]["xff"].split(",")[-1].strip() == "127.0.0.2", (
                f"X-Forwarded-For of a client bound to 127.0.0.2: {got and got[0]['xff']!r}"
                " (the source address did not take)")
            for shard in range(shards):
                for i in range(3):  # more than the rate's burst: refusals for the cap take no token
                    u = await expect_refused(s, cid(f"capno{shard}", shard), 429,
                                             "a 4th connection from 127.0.0.2", source="127.0.0.2")
                    assert u.retry_after() is None, f"a refusal for the cap carries Retry-After {u.retry_after()}"
                    cap_refusals += 1
            # Another address has a count of its own.
            other = await s.connect(cid("capother", 1 % shards), source="127.0.0.3")
            # One leaves: room for one more (the release is asynchronous: poll).
            await s.close(held.pop(0))
            outcomes = []

            async def one_more():
                u = await s.attempt(cid("capagain"), source="127.0.0.2")
                outcomes.append(u)
                if not u.accepted:
                    refused_ids.append(u.id)
                    assert u.status == 429 and u.retry_after() is None, (
                        f"after one of 3 left, a new connection from 127.0.0.2 got {u!r} "
                        "(a rate refusal means refusals for the cap took tokens)")
                return u.accepted, outcomes[-5:]

            await poll("a new connection from 127.0.0.2 after one of 3 left", one_more)
            cap_refusals += sum(1 for u in outcomes if not u.accepted)
            # At the cap again.
            await expect_refused(s, cid("capfull"), 429, "again a 4th from 127.0.0.2", source="127.0.0.2")
            cap_refusals += 1
            assert other.state.name == "OPEN", "the connection from 127.0.0.3 did not stay open"
        d = delta(before, await refused(ctl))
        assert d["ip_connections"] == cap_refusals, (
            f"ws2api_refused_total{{reason=\"ip_connections\"}} grew by {d['ip_connections']}, "
            f"expected {cap_refusals}")
        assert d["ip_rate"] == 0, f"ip_rate refusals grew by {d['ip_rate']}: the cap's refusals took tokens"
        api.assert_untouched(refused_ids)

    # ---- 3: --connect-rate-per-ip ------------------------------------------------------

    async def connect_rate():
        gw, ctl = args.connrate, Control(args.connrate_control)
        before = await refused(ctl)
        burst = 5
        async with Session(gw) as s:
            started = time.monotonic()
            # The burst at once: 5 upgrades in flight together, all accepted.
            first = await asyncio.gather(*(
                s.attempt(cid("rate", i % shards), source="127.0.0.4") for i in range(burst)))
            assert all(u.accepted for u in first), f"the first {burst} of a burst: {first}"
            for u in first:
                await s.close(u.ws)
            # Then one at a time, quickly, until one is refused (the bucket refills at
            # 5/s, so one or two more may pass if the burst took a while).
            passed, refusal = burst, None
            for i in range(20):
                u = await s.attempt(cid("ratemore", i % shards), source="127.0.0.4")
                if not u.accepted:
                    refusal = u
                    break
                passed += 1
                await s.close(u.ws)
            elapsed = time.monotonic() - started
            assert refusal is not None, f"{passed} upgrades from 127.0.0.4 in {elapsed:.2f} s, none refused"
            refused_ids.append(refusal.id)
            allowed = burst + int(elapsed * burst) + 1
            assert passed <= allowed, (
                f"{passed} upgrades passed in {elapsed:.2f} s before a refusal; the rate allows {allowed}")
            assert refusal.status == 429, f"the refused upgrade answered {refusal.status}, expected 429"
            value = refusal.retry_after()
            assert value is not None, "the 429 has no Retry-After header"
            assert value.isdigit() and int(value) >= 1, f"Retry-After {value!r} is not an integer >= 1"
            note(f"{passed} passed in {elapsed * 1000:.0f} ms, then 429 Retry-After: {value}")
            api.assert_untouched([refusal.id])
            # Another address is not limited by this one's rate.
            ws = await s.connect(cid("rateother"), source="127.0.0.5")
            await s.close(ws)
            # After Retry-After seconds (the contract's wait, not a guess) it passes again.
            await asyncio.sleep(int(value))
            again = await s.attempt(cid("rateafter"), source="127.0.0.4")
            assert again.accepted, f"after waiting Retry-After {value} s: {again!r}"
        d = delta(before, await refused(ctl))
        assert d["ip_rate"] == 1, f"ws2api_refused_total{{reason=\"ip_rate\"}} grew by {d['ip_rate']}, expected 1"
        assert d["ip_connections"] == 0, f"ip_connections refusals grew by {d['ip_connections']} (no cap set)"

    # ---- 4: the per-address table forgets idle addresses ------------------------------

    async def table_forgets():
        gw, ctl = args.ipcap, Control(args.ipcap_control)

        async def tracked():
            values = metric(await ctl.metrics(), "ws2api_tracked_addresses")
            assert len(values) == shards, f"ws2api_tracked_addresses has shards {sorted(values)}"
            return sum(values.values())

        async with Session(gw) as s:
            held = [await s.connect(cid(f"tbl{last}", last % shards), source=f"127.0.0.{last}")
                    for last in (5, 6, 7)]
            n = await tracked()
            assert n >= 3, f"3 addresses hold open connections, ws2api_tracked_addresses sums to {n}"
            for ws in held:
                await s.close(ws)
        started = time.monotonic()

        async def forgotten():
            n = await tracked()
            return n == 0, n

        await poll("ws2api_tracked_addresses back to 0 after the connections closed", forgotten,
                   attempts=100, interval=0.1)
        note(f"forgotten {time.monotonic() - started:.1f} s after the closes")

    # ---- 4b: --max-tracked-ips full ---------------------------------------------------

    async def table_full():
        gw, ctl = args.table, Control(args.table_control)
        before = await refused(ctl)
        sources = [f"127.0.0.{last}" for last in range(10, 14)]
        async with Session(gw) as s:
            outcomes = {}
            for i, source in enumerate(sources):  # held open: 4 addresses, room for 1 per shard
                outcomes[source] = await s.attempt(cid(f"full{i}", i % shards), source=source)
            accepted = [src for src, u in outcomes.items() if u.accepted]
            denied = [src for src, u in outcomes.items() if not u.accepted]
            note(f"accepted from {accepted}, refused from {denied}")
            assert 1 <= len(accepted) <= shards, (
                f"{len(accepted)} of {len(sources)} addresses accepted with room for {shards}: {outcomes}")
            for src in denied:
                u = outcomes[src]
                refused_ids.append(u.id)
                assert u.status == 503, f"a new address ({src}) while the table is full: {u.status}, expected 503"
            # A known address is still served while the table is full.
            await s.connect(cid("fullknown"), source=accepted[0])
            d = delta(before, await refused(ctl))
            assert d["ip_table_full"] == len(denied), (
                f"ws2api_refused_total{{reason=\"ip_table_full\"}} grew by {d['ip_table_full']}, expected {len(denied)}")
            api.assert_untouched([outcomes[src].id for src in denied])
        # Once they are closed (no rate: forgotten with the last connection) the
        # refused addresses get in.
        async with Session(gw) as s:
            for src in denied:
                async def gets_in(src=src):
                    u = await s.attempt(cid("fullafter"), source=src)
                    if not u.accepted:
                        refused_ids.append(u.id)
                        return False, u
                    await s.close(u.ws)
                    return True, u

                await poll(f"a connection from {src} once the table emptied", gets_in)

    # ---- 5: --max-message-rate ---------------------------------------------------------

    async def throttled_client():
        gw, ctl = args.msgrate, Control(args.msgrate_control)
        rate, count = 20, 100
        throttled_before = await ctl.total("ws2api_throttled_total")
        client_id = cid("msgrate")
        async with Session(gw) as s:
            ws = await s.connect(client_id)
            started = time.monotonic()
            for i in range(count):  # all at once, no waiting for answers
                await asyncio.wait_for(ws.send(f"m{i:03d}"), TIMEOUT)
            sent_in = time.monotonic() - started
            for i in range(count):
                got = await recv(ws, f"answer {i} of {count}")
                assert got == f"echo: m{i:03d}", f"answer {i}: {got!r}, expected 'echo: m{i:03d}'"
            took = time.monotonic() - started
            assert ws.state.name == "OPEN", f"the throttled client was closed: {ws.close_code} {ws.close_reason!r}"
            await asyncio.wait_for(ws.send("after"), TIMEOUT)
            got = await recv(ws, "after the throttling")
            assert got == "echo: after", f"a message after the throttling: {got!r}"
        posts = [r for r in api.requests(client_id, "POST") if r["body"] != "after"]
        bodies = [r["body"] for r in posts]
        assert bodies == [f"m{i:03d}" for i in range(count)], (
            f"the API got {len(bodies)} POSTs, not m000..m{count - 1:03d} in order: {bodies[:5]}...")
        span = posts[-1]["t"] - posts[0]["t"]
        least = (count - rate) / rate - 1.0  # 4 s after the burst of 20, minus a tolerance
        assert span >= least, f"{count} POSTs spanned {span:.2f} s; --max-message-rate {rate} needs >= {least:.1f} s"
        burst_span = posts[rate - 1]["t"] - posts[0]["t"]
        assert burst_span < 1.5, f"the first {rate} (the burst) spanned {burst_span:.2f} s"
        grew = await ctl.total("ws2api_throttled_total") - throttled_before
        assert grew >= 1, f"ws2api_throttled_total grew by {grew}"
        note(f"sent in {sent_in * 1000:.0f} ms; answers took {took:.2f} s; POSTs spanned {span:.2f} s, "
             f"the burst {burst_span * 1000:.0f} ms; ws2api_throttled_total +{grew:.0f}")

    # ---- 6: --max-outbound-total -------------------------------------------------------

    body_size = 16 * 1024
    stuck_n = 4  # 4 x 3 frames of 16 KiB could hold 192 KiB: the share fills first

    async def fill_share(gw, ctl, tag, stuck):
        """Connects `stuck_n` stalled clients on shard 0 (appended to `stuck` as they
        connect, for the caller to close) and pushes `body_size` bodies to them round
        robin until a push gets 503. Returns (ids, accepted bodies per id, the id of
        the first 503, pushes made)."""
        loop = asyncio.get_running_loop()
        stuck_ids = [cid(tag, 0) for _ in range(stuck_n)]
        for client_id in stuck_ids:
            stuck.append(await loop.run_in_executor(None, stalled_client, gw, client_id))
        accepted = {client_id: [] for client_id in stuck_ids}
        pushes = 0
        for round_ in range(40):  # bounded: the budget fills within ~15 rounds
            for client_id in stuck_ids:
                body = (f"{client_id}-{round_:02d}-").ljust(body_size, "x")
                status = await ctl.push(client_id, body)
                pushes += 1
                if status == 200:
                    accepted[client_id].append(body)
                    continue
                assert status == 503, f"push {pushes} to {client_id} answered {status}"
                return stuck_ids, accepted, client_id, pushes
        raise AssertionError(f"{pushes} pushes of {body_size} B to {stuck_n} stalled clients, no 503")

    async def outbound_budget():
        gw, ctl = args.budget, Control(args.budget_control)
        loop = asyncio.get_running_loop()
        per_client = args.budget_outbound
        share = args.budget_total // shards
        m = await ctl.metrics()
        budgets = metric(m, "ws2api_outbound_budget_bytes")
        assert budgets == {str(k): share for k in range(shards)}, (
            f"ws2api_outbound_budget_bytes {budgets}, expected {share} on each shard")
        assert await ctl.readyz() == 200, "/readyz is not 200 before the check"
        before = await refused(ctl)
        stuck = []
        try:
            stuck_ids, accepted, first_503, pushes = await fill_share(gw, ctl, "stuck", stuck)
            infos = {client_id: await ctl.info(client_id) for client_id in stuck_ids}
            queued = {client_id: info["queued_bytes"] for client_id, info in infos.items()}
            note(f"first 503 at push {pushes} ({first_503}); queued_bytes {list(queued.values())}, "
                 f"sum {sum(queued.values())} of the share {share}")
            assert all(info["shard"] == 0 for info in infos.values()), "the stalled clients are not all on shard 0"
            # The refusal was the budget's: the client's own bound had room for this body.
            assert queued[first_503] + body_size <= per_client, (
                f"{first_503} was refused with {queued[first_503]} B queued: that is its own "
                f"--max-outbound-bytes {per_client}, not the budget")
            d = delta(before, await refused(ctl))
            assert d["outbound_budget"] == 1, (
                f"ws2api_refused_total{{reason=\"outbound_budget\"}} grew by {d['outbound_budget']}, expected 1")
            m = await ctl.metrics()
            used = metric(m, "ws2api_outbound_queued_bytes").get("0")
            assert used is not None and share - body_size < used <= share, (
                f"ws2api_outbound_queued_bytes{{shard=\"0\"}} {used}: expected within {body_size} B of the share {share}")
            assert await ctl.readyz() == 503, "/readyz is not 503 while shard 0's budget is used up"
            # Every other stalled client with bytes queued is refused too, none for its own bound.
            extra = 0
            for client_id in stuck_ids:
                if client_id == first_503 or queued[client_id] == 0:
                    continue
                assert queued[client_id] + body_size <= per_client, (
                    f"{client_id}: {queued[client_id]} B queued, no room under its own bound to test the budget")
                status = await ctl.push(client_id, "y" * body_size)
                assert status == 503, f"push to {client_id} while the budget is used up answered {status}"
                extra += 1
            # What the kernel takes at once never counts: a reading client on the full
            # shard, and one on the other shard, still get their pushes.
            async with Session(gw) as s:
                for shard in range(shards):
                    reader_id = cid("reader", shard)
                    ws = await s.connect(reader_id)
                    status = await ctl.push(reader_id, f"to a reader on shard {shard}")
                    assert status == 200, f"push to a reading client on shard {shard} answered {status}"
                    got = await recv(ws, f"the reader on shard {shard}")
                    assert got == f"to a reader on shard {shard}", f"reader on shard {shard} got {got[:40]!r}"
            d = delta(before, await refused(ctl))
            assert d["outbound_budget"] == 1 + extra, (
                f"outbound_budget refusals grew by {d['outbound_budget']}, expected {1 + extra}")
            assert await ctl.readyz() == 503, "/readyz is not 503 while shard 0's budget is still used up"
            # The stalled clients read now: everything accepted arrives, in order, and
            # the budget is given back.
            for (sock, pending), client_id in zip(stuck, stuck_ids):
                want = accepted[client_id]
                got = await loop.run_in_executor(None, read_frames, sock, pending, len(want), TIMEOUT)
                got = [g.decode() for g in got]
                bad = [i for i, (g, w) in enumerate(zip(got, want)) if g != w]
                assert not bad, f"{client_id}: push {bad[0]} arrived as {got[bad[0]][:24]!r}..., expected {want[bad[0]][:24]!r}..."

            async def ready_again():
                status = await ctl.readyz()
                used = metric(await ctl.metrics(), "ws2api_outbound_queued_bytes").get("0")
                return status == 200 and used == 0, (status, used)

            await poll("/readyz 200 and shard 0's queued bytes 0 once the clients read", ready_again)
        finally:
            for sock, _ in stuck:
                sock.close()

    async def outbound_budget_exact():
        """The share bounds the bytes queued, frame headers included: a push whose
        frame would pass the share by one byte is refused; one that fills it to the
        byte is accepted."""
        gw, ctl = args.budget, Control(args.budget_control)
        per_client = args.budget_outbound
        share = args.budget_total // shards
        stuck = []
        try:
            assert await ctl.readyz() == 200, "/readyz is not 200 before the check"
            stuck_ids, _, _, _ = await fill_share(gw, ctl, "exact", stuck)

            async def used():
                return int(metric(await ctl.metrics(), "ws2api_outbound_queued_bytes")["0"])

            left = share - await used()
            header = 4  # a server frame of 126 to 65535 bytes: 2 + 2 length bytes
            assert 126 + header <= left, f"only {left} B of the share left; cannot test a frame that fills it"
            queued = {c: (await ctl.info(c))["queued_bytes"] for c in stuck_ids}
            # A client with bytes queued (so nothing goes out at once) and room under its own bound.
            target = next((c for c in stuck_ids if 0 < queued[c] and queued[c] + left + 64 <= per_client), None)
            assert target, f"no stalled client with room for {left} B under its own bound: {queued}"
            over = left - header + 1  # its frame: left + 1 bytes
            status = await ctl.push(target, "o" * over)
            now = await used()
            assert status == 503 and now <= share, (
                f"push of {over} B (a frame of {over + header} B) with {left} B of the share left "
                f"answered {status}; ws2api_outbound_queued_bytes{{shard=\"0\"}} now {now}, the share {share}")
            exact = left - header  # its frame: exactly `left` bytes
            status = await ctl.push(target, "e" * exact)
            now = await used()
            assert status == 200 and now == share, (
                f"push of {exact} B (a frame of exactly the {left} B left) answered {status}; "
                f"queued bytes now {now}, the share {share}")
            status = await ctl.push(target, "1")
            assert status == 503, f"a 1-byte push with the share full answered {status}"
        finally:
            for sock, _ in stuck:
                sock.close()

        async def ready_again():
            status = await ctl.readyz()
            return status == 200, status

        await poll("/readyz 200 once the stalled clients closed", ready_again)

    # ---- 7: bad flags ------------------------------------------------------------------

    async def bad_flags():
        loop = asyncio.get_running_loop()
        base = ["--listen", "127.0.0.1:0", "--control-listen", "127.0.0.1:0",
                "--api-url", "http://127.0.0.1:9/", "--shards", "2"]
        cases = [
            ("--allowed-origins", ["--allowed-origins", "https://a.*.test"]),
            ("--allowed-origins", ["--allowed-origins", "https://app.example.com/path"]),
            ("--max-outbound-total", ["--max-outbound-total", "1KiB"]),
            # 100 KiB over 2 shards is 50 KiB each, below one client's 64 KiB.
            ("--max-outbound-total", ["--max-outbound-total", "100KiB", "--max-outbound-bytes", "64KiB"]),
            # Every shard needs room for one address.
            ("--max-tracked-ips", ["--max-tracked-ips", "1"]),
        ]

        def run_one(extra):
            try:
                p = subprocess.run([args.ws2api_bin, *base, *extra], capture_output=True, timeout=5)
            except subprocess.TimeoutExpired:
                return None, b""
            return p.returncode, p.stderr

        for flag, extra in cases:
            rc, err = await loop.run_in_executor(None, run_one, extra)
            shown = " ".join(extra)
            assert rc is not None, f"ws2api {shown}: still running after 5 s (accepted the flag)"
            lines = [line for line in err.decode(errors="replace").splitlines() if line.strip()]
            assert rc == 2, f"ws2api {shown}: exit code {rc}, expected 2; stderr {lines}"
            assert len(lines) == 1, f"ws2api {shown}: stderr has {len(lines)} lines: {lines}"
            assert flag in lines[0], f"ws2api {shown}: stderr does not name {flag}: {lines[0]!r}"

    async def no_api_request_for_any_refusal():
        assert refused_ids, "no upgrade was refused"
        api.assert_untouched(refused_ids)
        note(f"{len(refused_ids)} refused upgrades, none reached the API")

    await check("--allowed-origins: listed origins 101, others 403 before any API request", origins())
    await check("--max-connections-per-ip: the 4th from one address 429, others unaffected", per_ip_cap())
    await check("--connect-rate-per-ip: beyond the burst 429 with Retry-After, then again after it", connect_rate())
    await check("--max-tracked-ips table: idle addresses forgotten (ws2api_tracked_addresses 0)", table_forgets())
    await check("--max-tracked-ips full: a new address 503, a known one served, room again after", table_full())
    await check("--max-message-rate: 100 messages all answered in order, paced, not closed", throttled_client())
    await check("--max-outbound-total: a shard's share full gives 503 and /readyz 503, then recovers",
                outbound_budget())
    await check("--max-outbound-total: queued bytes, frame headers included, never pass the share",
                outbound_budget_exact())
    await check("bad --allowed-origins / --max-outbound-total exit 2 with one line naming the flag", bad_flags())
    await check("no refused upgrade reached the API server", no_api_request_for_any_refusal())


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for g in ("origins", "ipcap", "connrate", "msgrate", "budget", "table"):
        ap.add_argument(f"--{g}", required=True, help=f"ws://HOST:PORT of the {g} gateway")
        ap.add_argument(f"--{g}-control", required=True, help="http://HOST:PORT of its control listener")
    ap.add_argument("--budget-outbound", type=int, required=True, help="the budget gateway's --max-outbound-bytes")
    ap.add_argument("--budget-total", type=int, required=True, help="the budget gateway's --max-outbound-total")
    ap.add_argument("--shards", type=int, default=2, help="--shards of every gateway")
    ap.add_argument("--api-log", required=True, help="the JSON-lines file api.php appends every request to")
    ap.add_argument("--ws2api-bin", required=True, help="the ws2api binary (for the bad-flag checks)")
    args = ap.parse_args()
    checks.run_checks(main, args, f"websockets {websockets.__version__}")
