#!/usr/bin/env python3
"""Interop checks: a real WebSocket client (the `websockets` package) against a
running ws2api in front of the PHP example backend (examples/php/index.php).

    python3 tests/interop/interop.py --gateway ws://127.0.0.1:7001 --php http://127.0.0.1:8000

Prints "PASS name" or "FAIL name: why" per check, then "N passed, M failed";
exits 1 if anything failed. Every wait is bounded by a timeout.
"""

import argparse
import asyncio
import sys
import urllib.error
import urllib.request
import uuid

import websockets
import websockets.exceptions as wsx

TIMEOUT = 5.0  # seconds, for any single wait

RESULTS = {"passed": 0, "failed": 0}


def report(name, error=None):
    if error is None:
        RESULTS["passed"] += 1
        print(f"PASS {name}", flush=True)
    else:
        RESULTS["failed"] += 1
        print(f"FAIL {name}: {error}", flush=True)


def http_get(url):
    """GET url (blocking, bounded); returns (status, body text)."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


async def aget(url):
    return await asyncio.get_running_loop().run_in_executor(None, http_get, url)


async def connect(url):
    # open_timeout exists in both the legacy and the new client; wait_for bounds it anyway.
    return await asyncio.wait_for(
        websockets.connect(url, open_timeout=TIMEOUT, close_timeout=TIMEOUT), TIMEOUT + 1
    )


async def recv(ws):
    return await asyncio.wait_for(ws.recv(), TIMEOUT)


def rejected_status(exc):
    """HTTP status of a refused handshake, across websockets versions:
    >= 14 raises InvalidStatus(.response.status_code), older InvalidStatusCode(.status_code)."""
    response = getattr(exc, "response", None)
    if response is not None and hasattr(response, "status_code"):
        return int(response.status_code)
    if hasattr(exc, "status_code"):
        return int(exc.status_code)
    return None


# websockets.connect is the new client from 14.0 on: it raises InvalidStatus. Before
# that it was the legacy client, which raises InvalidStatusCode (deprecated since 14.0,
# so only looked up on old versions, to keep the output free of warnings).
if int(websockets.__version__.split(".")[0]) >= 14:
    REJECTED = (wsx.InvalidStatus,)
else:
    REJECTED = tuple(
        getattr(wsx, name) for name in ("InvalidStatus", "InvalidStatusCode") if hasattr(wsx, name)
    )


def close_code(exc, ws):
    """Close code the peer sent, across versions (.rcvd is new; .code is old/deprecated)."""
    rcvd = getattr(exc, "rcvd", None)
    if rcvd is not None:
        return rcvd.code
    code = getattr(ws, "close_code", None)
    if code is None:
        code = getattr(exc, "code", None)
    return code


async def wait_closed_by_peer(ws):
    """Wait (bounded) until the peer closes ws; returns the close code received."""
    try:
        while True:
            await recv(ws)  # drain anything still queued before the close frame
    except wsx.ConnectionClosed as e:
        return close_code(e, ws)


async def quiet_close(ws):
    try:
        await asyncio.wait_for(ws.close(), TIMEOUT)
    except Exception:
        pass


async def check(name, coro):
    """Run one check: the coroutine raises AssertionError (or anything) to fail."""
    try:
        await asyncio.wait_for(coro, 4 * TIMEOUT)
        report(name)
    except AssertionError as e:
        report(name, str(e) or "assertion failed")
    except asyncio.TimeoutError:
        report(name, "timed out")
    except Exception as e:  # noqa: BLE001 - any error is a failure of this check
        report(name, f"{type(e).__name__}: {e}")


async def main(gateway, php):
    gateway = gateway.rstrip("/")
    php = php.rstrip("/")
    run = uuid.uuid4().hex[:8]  # unique ids, so an old log file never matches

    def cid(name):
        return f"it-{run}-{name}"

    async def connect_accepted():
        ws = await connect(f"{gateway}/{cid('connect')}?token=abc")
        await quiet_close(ws)

    async def banned_refused():
        try:
            ws = await connect(f"{gateway}/banned")
        except REJECTED as e:
            status = rejected_status(e)
            assert status == 403, f"expected HTTP 403, got {status}"
            return
        await quiet_close(ws)
        raise AssertionError("handshake was accepted")

    async def text_round_trip():
        ws = await connect(f"{gateway}/{cid('text')}")
        try:
            await ws.send("hello")
            got = await recv(ws)
            assert got == "echo: hello", f"got {got!r}"
        finally:
            await quiet_close(ws)

    async def binary_round_trip():
        ws = await connect(f"{gateway}/{cid('binary')}")
        try:
            data = bytes([0, 1, 2, 255, 254])
            await ws.send(data)
            got = await recv(ws)
            assert got == data, f"got {got!r}"
        finally:
            await quiet_close(ws)

    async def empty_answer_sends_nothing():
        # "push-me" gets an empty answer from PHP: nothing must reach the client,
        # so the first thing received is the answer to the next message.
        ws = await connect(f"{gateway}/{cid('empty')}")
        try:
            await ws.send("push-me")
            await ws.send("after")
            got = await recv(ws)
            assert got == "echo: after", f"got {got!r}"
        finally:
            await quiet_close(ws)

    async def push_from_php():
        ws = await connect(f"{gateway}/{cid('push')}")
        try:
            status, body = await aget(f"{php}/_push/{cid('push')}?msg=pushed%20from%20php")
            assert status == 200, f"PHP /_push answered {status}: {body.strip()}"
            got = await recv(ws)
            assert got == "pushed from php", f"got {got!r}"
        finally:
            await quiet_close(ws)

    async def push_unknown_404():
        status, body = await aget(f"{php}/_push/{cid('nobody')}?msg=x")
        assert status == 404, f"expected 404 for a client not connected, got {status}: {body.strip()}"

    async def clean_close_logged():
        ws = await connect(f"{gateway}/{cid('close')}")
        await asyncio.wait_for(ws.close(code=1000, reason="bye"), TIMEOUT)
        want = f"{cid('close')} 1000 bye"
        last = ""
        for _ in range(50):  # 50 x 0.1 s: bounded to ~5 s in total
            _, last = await aget(f"{php}/_log")
            if want in last.splitlines():
                return
            await asyncio.sleep(0.1)
        tail = " | ".join(last.splitlines()[-3:])
        raise AssertionError(f"{want!r} not in PHP log after 5 s (tail: {tail!r})")

    async def same_id_replaces():
        first = await connect(f"{gateway}/{cid('dup')}")
        try:
            second = await connect(f"{gateway}/{cid('dup')}")
        except BaseException:
            await quiet_close(first)
            raise
        try:
            code = await wait_closed_by_peer(first)
            assert code == 4000, f"first connection closed with {code}, expected 4000"
            await second.send("still here")
            got = await recv(second)
            assert got == "echo: still here", f"second connection got {got!r}"
        finally:
            await quiet_close(first)
            await quiet_close(second)

    await check("connect accepted", connect_accepted())
    await check("banned id refused with 403", banned_refused())
    await check("text round trip", text_round_trip())
    await check("binary round trip", binary_round_trip())
    await check("empty answer sends nothing", empty_answer_sends_nothing())
    await check("push from php", push_from_php())
    await check("push to unknown client is 404", push_unknown_404())
    await check("clean close reaches php log", clean_close_logged())
    await check("same id replaces first with 4000", same_id_replaces())


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gateway", required=True, help="ws://HOST:PORT of ws2api's public listener")
    ap.add_argument("--php", required=True, help="http://HOST:PORT of the PHP example backend")
    args = ap.parse_args()
    print(f"websockets {websockets.__version__}", flush=True)
    try:
        asyncio.run(main(args.gateway, args.php))
    except KeyboardInterrupt:
        pass
    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed", flush=True)
    sys.exit(1 if RESULTS["failed"] else 0)
