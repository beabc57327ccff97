#!/usr/bin/env python3
"""Drives two ws2api gateways behind HAProxy (TCP mode, send-proxy-v2, consistent
hashing on the path) with Python `websockets` clients whose source address is
127.0.0.7, over ws:// and over wss:// (HAProxy terminating TLS, send-proxy-v2-ssl-cn,
an optional client certificate from the test CA run.sh made). Prints one line per check
and `N passed, M failed` at the end; exits 1 if any check failed. Started by
tests/haproxy/run.sh."""

import argparse
import asyncio
import os
import socket
import ssl
import sys
import urllib.error
import urllib.request

import websockets

SOURCE = "127.0.0.7"
TIMEOUT = 10


def http(method, url, body=None):
    """(status, body text) of one HTTP request."""
    request = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", "text/plain; charset=utf-8")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def connect(front, client_id, tls=None):
    """A websockets client for /client_id whose socket is bound to 127.0.0.7 (a
    pre-connected `sock=` works across websockets versions); wss:// with the
    `ssl.SSLContext` `tls`."""
    host, port = front
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((SOURCE, 0))
    sock.settimeout(TIMEOUT)
    sock.connect((host, port))
    sock.setblocking(False)
    scheme = "wss" if tls else "ws"
    extra = {"ssl": tls, "server_hostname": "localhost"} if tls else {}
    return await asyncio.wait_for(
        websockets.connect(f"{scheme}://{host}:{port}/{client_id}", sock=sock, open_timeout=TIMEOUT, **extra),
        TIMEOUT,
    )


def tls_context(certs, client=None):
    """Trusts the test CA; presents the client certificate `client` (a file stem in
    `certs`: `client`, `mallory`) if given."""
    ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
    if client:
        ctx.load_cert_chain(os.path.join(certs, f"{client}.crt"), os.path.join(certs, f"{client}.key"))
    return ctx


async def recv(ws):
    return await asyncio.wait_for(ws.recv(), TIMEOUT)


def seen(api):
    """The backend's log: (method, client id, X-Forwarded-For, connection id,
    X-Forwarded-Proto, X-Client-Cert-CN) rows, '-' where a header was absent."""
    status, text = http("GET", f"{api}/_seen")
    assert status == 200, status
    return [tuple(line.split(" ")) for line in text.splitlines() if line]


def where(controls, client_id):
    """Indexes of the gateways whose control listener knows client_id."""
    return [i for i, c in enumerate(controls) if http("GET", f"{c}/{client_id}")[0] == 200]


async def wait_for(what, predicate):
    """Polls predicate (every 50 ms, at most TIMEOUT s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def check_forwarded_for(front, controls, api):
    ws = await connect(front, "hp-xff")
    await ws.send("hello")
    got = await recv(ws)
    assert got == "echo: hello", got
    await ws.close()
    rows = await await_rows(api, "hp-xff", 3)
    assert [r[0] for r in rows] == ["GET", "POST", "DELETE"], rows
    assert all(r[2] == SOURCE for r in rows), rows
    assert len({r[3] for r in rows}) == 1, rows
    # Plain ws://: every request says http, and no certificate.
    assert all(r[4] == "http" and r[5] == "-" for r in rows), rows


async def tls_round_trip(args, api, client_id, client_cert):
    """Connect over wss:// (with `client_cert` or none), one message, close; the
    backend's three rows for it."""
    ws = await connect(args.tls_front, client_id, tls_context(args.certs, client_cert))
    await ws.send("over tls")
    got = await recv(ws)
    assert got == "echo: over tls", got
    await ws.close()
    rows = await await_rows(api, client_id, 3)
    assert [r[0] for r in rows] == ["GET", "POST", "DELETE"], rows
    assert all(r[2] == SOURCE for r in rows), f"X-Forwarded-For through the TLS frontend: {rows}"
    assert all(r[4] == "https" for r in rows), f"X-Forwarded-Proto over wss://: {rows}"
    return rows


async def check_tls_with_a_verified_certificate(front, controls, api, args):
    rows = await tls_round_trip(args, api, "hp-tls-cert", "client")
    assert rows[0][5] == "charger-17", f"Connect's X-Client-Cert-CN: {rows[0]}"
    assert rows[1][5] == "-" and rows[2][5] == "-", f"the CN is for Connect only: {rows}"


async def check_tls_without_a_certificate(front, controls, api, args):
    rows = await tls_round_trip(args, api, "hp-tls-anon", None)
    assert all(r[5] == "-" for r in rows), f"no certificate, no CN: {rows}"


async def check_tls_with_an_unverified_certificate(front, controls, api, args):
    # HAProxy lets it through (ca-ignore-err): the gateway sees verify != 0 and must not
    # pass mallory's CN on as an identity.
    rows = await tls_round_trip(args, api, "hp-tls-mallory", "mallory")
    assert all(r[5] == "-" for r in rows), f"an unverified certificate's CN was believed: {rows}"


async def await_rows(api, client_id, count):
    """The backend's rows for client_id, once there are at least count."""
    await wait_for(f"{count} requests for {client_id}", lambda: len([r for r in seen(api) if r[1] == client_id]) >= count)
    return [r for r in seen(api) if r[1] == client_id]


async def check_sticky_and_spread(front, controls, api):
    ids = [f"hp-{i}" for i in range(10)]
    homes = {}
    for client_id in ids:
        ws = await connect(front, client_id)
        await ws.send("x")
        assert await recv(ws) == "echo: x"
        found = where(controls, client_id)
        assert len(found) == 1, (client_id, found)
        homes[client_id] = found[0]
        await ws.close()
    assert set(homes.values()) == {0, 1}, f"every id on one gateway: {homes}"
    # Again: each id lands where it landed before.
    for client_id in ids:
        ws = await connect(front, client_id)
        found = where(controls, client_id)
        assert found == [homes[client_id]], (client_id, found, homes[client_id])
        await ws.close()
    check_sticky_and_spread.homes = homes


async def check_push_through_each_gateway(front, controls, api):
    homes = getattr(check_sticky_and_spread, "homes", None)
    assert homes, "needs check_sticky_and_spread"
    for gateway in (0, 1):
        client_id = next(i for i, g in homes.items() if g == gateway)
        ws = await connect(front, client_id)
        other = 1 - gateway
        status, body = http("POST", f"{controls[gateway]}/{client_id}", f"via gw{gateway + 1}".encode())
        assert status == 200, (status, body)
        got = await recv(ws)
        assert got == f"via gw{gateway + 1}", got
        status, _ = http("POST", f"{controls[other]}/{client_id}", b"nope")
        assert status == 404, f"gw{other + 1} answered {status} for a client it does not hold"
        await ws.close()


async def check_every_request_from_the_source(front, controls, api):
    await wait_for("every Disconnect", lambda: sum(r[0] == "GET" for r in seen(api)) == sum(r[0] == "DELETE" for r in seen(api)))
    rows = seen(api)
    assert rows, "the backend saw nothing"
    wrong = [r for r in rows if r[2] != SOURCE]
    assert not wrong, wrong
    connects = [r[3] for r in rows if r[0] == "GET"]
    disconnects = [r[3] for r in rows if r[0] == "DELETE"]
    assert sorted(connects) == sorted(disconnects), "one Disconnect per connection"
    # What a backend relies on: one ClientId never sees the same connection id twice.
    per_client = [(r[1], r[3]) for r in rows if r[0] == "GET"]
    assert len(set(per_client)) == len(per_client), "a connection id repeated for one ClientId"
    if len(set(connects)) != len(connects):
        # Known gateway bug (tests/faults.rs, ignored test
        # connection_ids_differ_between_gateways_started_together): the id is
        # "{boot ms:x}-{shard}-{seq}", so two gateways started in the same millisecond
        # hand out the same ids. Reported, not failed, until it is fixed.
        print("note: two gateways handed out the same X-Connection-Id (known bug: same boot millisecond)")


CHECKS = [
    check_forwarded_for,
    check_sticky_and_spread,
    check_push_through_each_gateway,
    check_tls_with_a_verified_certificate,
    check_tls_without_a_certificate,
    check_tls_with_an_unverified_certificate,
    check_every_request_from_the_source,
]


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--front", required=True, help="HAProxy's host:port")
    parser.add_argument("--controls", nargs=2, required=True, help="the gateways' control URLs")
    parser.add_argument("--api", required=True, help="the PHP backend's URL")
    parser.add_argument("--tls-front", required=True, help="HAProxy's TLS host:port")
    parser.add_argument("--certs", required=True, help="the folder with ca.pem, client.*, mallory.*")
    args = parser.parse_args()
    host, port = args.front.rsplit(":", 1)
    front = (host, int(port))
    tls_host, tls_port = args.tls_front.rsplit(":", 1)
    args.tls_front = (tls_host, int(tls_port))
    controls = [c.rstrip("/") for c in args.controls]
    api = args.api.rstrip("/")
    passed = failed = 0
    for check in CHECKS:
        try:
            if check.__name__.startswith("check_tls"):
                await check(front, controls, api, args)
            else:
                await check(front, controls, api)
            print(f"ok   {check.__name__}")
            passed += 1
        except Exception as error:  # noqa: BLE001 - report and go on
            print(f"FAIL {check.__name__}: {type(error).__name__}: {error}")
            failed += 1
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
