#!/usr/bin/env python3
"""Drives two ws2api gateways behind HAProxy (TCP mode, send-proxy-v2, consistent
hashing on the path) with Python `websockets` clients whose source address is
127.0.0.7, over ws:// and over wss://. The TLS frontend terminates TLS, asks for an
optional client certificate from the test CA run.sh made, lets one that does not verify
through (ca-ignore-err/crt-ignore-err), and forwards with send-proxy-v2-ssl-cn (an SSL
TLV: client flags, verify result, CN). What the API server must see:

  ws://                         X-Forwarded-Proto http, no X-Client-Cert-CN
  wss://, charger-17 (CA)       https on every request, X-Client-Cert-CN charger-17
                                on the Connect only
  wss://, no certificate        https, no CN
  wss://, mallory (self-signed) HAProxy lets it through (its log line shows the
                                certificate with verify != 0): https, no CN

A client's own X-Forwarded-Proto / X-Client-Cert-CN headers never reach the API
server, and PROXY v2 SSL TLVs written straight to a gateway cover the flag combinations
HAProxy does not produce (PP2_CLIENT_CERT_SESS alone, no PP2_CLIENT_SSL, ...). Prints one
line per check and `N passed, M failed` at the end; exits 1 if any check failed.
Started by tests/haproxy/run.sh."""

import argparse
import asyncio
import collections
import os
import socket
import ssl
import struct
import sys
import urllib.error
import urllib.parse
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


async def connect(front, client_id, tls=None, headers=None):
    """A websockets client for /client_id whose socket is bound to 127.0.0.7 (a
    pre-connected `sock=` works across websockets versions); wss:// with the
    `ssl.SSLContext` `tls`; `headers` (a dict) added to the upgrade request. The
    client's source port is in `.source_port` (HAProxy's log line names it)."""
    host, port = front
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((SOURCE, 0))
    sock.settimeout(TIMEOUT)
    sock.connect((host, port))
    sock.setblocking(False)
    source_port = sock.getsockname()[1]
    scheme = "wss" if tls else "ws"
    extra = {"ssl": tls, "server_hostname": "localhost"} if tls else {}
    if headers:
        extra["additional_headers"] = headers
    ws = await asyncio.wait_for(
        websockets.connect(f"{scheme}://{host}:{port}/{client_id}", sock=sock, open_timeout=TIMEOUT, **extra),
        TIMEOUT,
    )
    ws.source_port = source_port
    return ws


def tls_context(certs, client=None):
    """Trusts the test CA; presents the client certificate `client` (a file stem in
    `certs`: `client`, `mallory`) if given."""
    ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
    if client:
        ctx.load_cert_chain(os.path.join(certs, f"{client}.crt"), os.path.join(certs, f"{client}.key"))
    return ctx


async def recv(ws):
    return await asyncio.wait_for(ws.recv(), TIMEOUT)


# One request the API server saw (api.php's log line); '-' where a header was absent.
Row = collections.namedtuple("Row", "method client xff conn proto cn")


def seen(api):
    """The backend's log, as Rows (the fields URL-decoded; a malformed line fails)."""
    status, text = http("GET", f"{api}/_seen")
    assert status == 200, status
    rows = []
    for line in text.splitlines():
        if not line:
            continue
        fields = line.split(" ")
        assert len(fields) == len(Row._fields), f"malformed API log line: {line!r}"
        rows.append(Row(*(urllib.parse.unquote(f) for f in fields)))
    return rows


def haproxy_tls_log(path):
    """HAProxy's log lines of the TLS frontend (haproxy.cfg.in's log-format), as
    {client port: (certificate used, verify result, CN)}; the latest per port."""
    lines = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as log:
            for line in log:
                fields = line.split()
                if len(fields) == 5 and fields[0] == "tls" and fields[1].isdigit():
                    lines[int(fields[1])] = (fields[2], fields[3], fields[4])
    except FileNotFoundError:
        pass
    return lines


async def haproxy_saw(args, port):
    """HAProxy's log line for the TLS client with source port `port` (written when
    the connection ends): (certificate used, verify result, CN)."""
    await wait_for(f"HAProxy's log line for client port {port}", lambda: port in haproxy_tls_log(args.haproxy_log))
    return haproxy_tls_log(args.haproxy_log)[port]


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


async def check_forwarded_for(front, controls, api, args=None):
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


async def tls_round_trip(args, api, client_id, client_cert, headers=None):
    """Connect over wss:// (with `client_cert` or none), one message, close; the
    backend's three rows for it and HAProxy's log line for it."""
    ws = await connect(args.tls_front, client_id, tls_context(args.certs, client_cert), headers)
    await ws.send("over tls")
    got = await recv(ws)
    assert got == "echo: over tls", got
    await ws.close()
    rows = await await_rows(api, client_id, 3)
    assert [r.method for r in rows] == ["GET", "POST", "DELETE"], rows
    assert len({r.conn for r in rows}) == 1, f"one connection id: {rows}"
    assert all(r.xff == SOURCE for r in rows), f"X-Forwarded-For through the TLS frontend: {rows}"
    assert all(r.proto == "https" for r in rows), f"X-Forwarded-Proto over wss://: {rows}"
    return rows, await haproxy_saw(args, ws.source_port)


async def check_tls_with_a_verified_certificate(front, controls, api, args):
    rows, (used, verify, cn) = await tls_round_trip(args, api, "hp-tls-cert", "client")
    assert (used, verify, cn) == ("1", "0", "charger-17"), f"HAProxy's view: used {used} verify {verify} CN {cn}"
    assert rows[0].cn == "charger-17", f"Connect's X-Client-Cert-CN: {rows[0]}"
    assert rows[1].cn == "-" and rows[2].cn == "-", f"the CN is for Connect only: {rows}"


async def check_tls_without_a_certificate(front, controls, api, args):
    # The client also claims a certificate and https itself: neither header may pass.
    spoof = {"X-Client-Cert-CN": "charger-17", "X-Forwarded-Proto": "https"}
    rows, (used, _, cn) = await tls_round_trip(args, api, "hp-tls-anon", None, spoof)
    assert (used, cn) == ("0", "-"), f"HAProxy's view: used {used} CN {cn}"
    assert all(r.cn == "-" for r in rows), f"no certificate, no CN: {rows}"


async def check_tls_with_an_unverified_certificate(front, controls, api, args):
    # The configured behaviour (ca-ignore-err all, crt-ignore-err all): HAProxy lets the
    # self-signed certificate through (tls_round_trip asserts the handshake and an echo)
    # and hands the gateway its CN with verify != 0; the gateway must not pass mallory's
    # CN on as an identity.
    rows, (used, verify, cn) = await tls_round_trip(args, api, "hp-tls-mallory", "mallory")
    assert used == "1" and verify.isdigit() and verify != "0" and cn == "mallory", (
        f"HAProxy's view: used {used} verify {verify} CN {cn} (want a certificate that did not verify)")
    assert all(r.cn == "-" for r in rows), f"an unverified certificate's CN was believed: {rows}"


async def check_plain_ws_ignores_client_headers(front, controls, api, args):
    # ws://: the client's own X-Forwarded-Proto / X-Client-Cert-CN / X-Forwarded-For are
    # not passed on; the gateway says http, no CN, and the address HAProxy saw.
    spoof = {"X-Forwarded-Proto": "https", "X-Client-Cert-CN": "charger-17", "X-Forwarded-For": "192.0.2.1"}
    ws = await connect(front, "hp-spoof", headers=spoof)
    await ws.send("hi")
    assert await recv(ws) == "echo: hi"
    await ws.close()
    rows = await await_rows(api, "hp-spoof", 3)
    assert [r.method for r in rows] == ["GET", "POST", "DELETE"], rows
    assert all((r.xff, r.proto, r.cn) == (SOURCE, "http", "-") for r in rows), rows


def proxy_v2(client, verify, cn, tlv_type=0x20):
    """A PROXY v2 header (TCP over IPv4, from 127.0.0.7:40000) with one SSL TLV:
    `client` flags, `verify`, a TLS version sub-TLV and, if given, the CN sub-TLV."""
    subs = bytes([0x21]) + struct.pack(">H", 7) + b"TLSv1.3"
    if cn is not None:
        subs += bytes([0x22]) + struct.pack(">H", len(cn)) + cn.encode()
    value = bytes([client]) + struct.pack(">I", verify) + subs
    tlv = bytes([tlv_type]) + struct.pack(">H", len(value)) + value
    addresses = socket.inet_aton(SOURCE) + socket.inet_aton("127.0.0.1") + struct.pack(">HH", 40000, 7001)
    body = addresses + tlv
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack(">H", len(body)) + body


async def raw_upgrade(gateway, client_id, header):
    """Writes `header` and a WebSocket upgrade for /client_id straight to a gateway,
    expects 101, then sends a close frame and hangs up."""
    host, port = gateway
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT)
    try:
        writer.write(header + (
            f"GET /{client_id} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        await writer.drain()
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert answer.startswith(b"HTTP/1.1 101"), f"{client_id}: {answer[:60]!r}"
        writer.write(b"\x88\x82" + b"\x00\x00\x00\x00" + struct.pack(">H", 1000))  # masked close 1000
        await writer.drain()
        await asyncio.wait_for(reader.read(), TIMEOUT)  # until the gateway hangs up
    finally:
        writer.close()


async def check_ssl_tlv_straight_to_a_gateway(front, controls, api, args):
    # (client id, client flags, verify, CN sub-TLV, TLV type) -> (X-Forwarded-Proto, X-Client-Cert-CN)
    cases = [
        ("hp-raw-conn", 0x03, 0, "charger-17", 0x20, "https", "charger-17"),     # SSL|CERT_CONN, verified
        ("hp-raw-sess", 0x05, 0, "charger-sess", 0x20, "https", "charger-sess"), # SSL|CERT_SESS (resumed), verified
        ("hp-raw-unverified", 0x07, 18, "mallory", 0x20, "https", "-"),          # verify 18: self-signed
        ("hp-raw-nocert", 0x01, 0, "nobody", 0x20, "https", "-"),                # TLS, no certificate flag
        ("hp-raw-notls", 0x06, 0, "nobody", 0x20, "http", "-"),                  # certificate flags, no PP2_CLIENT_SSL
        ("hp-raw-nocn", 0x03, 0, None, 0x20, "https", "-"),                      # verified, no CN sub-TLV
        ("hp-raw-othertlv", 0x03, 0, "charger-17", 0xE0, "http", "-"),           # same bytes, custom TLV type
    ]
    for client_id, client, verify, cn, tlv_type, _, _ in cases:
        await raw_upgrade(args.gateways[0], client_id, proxy_v2(client, verify, cn, tlv_type))
    wrong = []
    for client_id, *_, proto, want_cn in cases:
        rows = await await_rows(api, client_id, 2)
        if [(r.method, r.proto, r.cn) for r in rows] != [("GET", proto, want_cn), ("DELETE", proto, "-")]:
            wrong.append((client_id, proto, want_cn, rows))
    assert not wrong, wrong


async def await_rows(api, client_id, count):
    """The backend's rows for client_id, once there are at least count."""
    await wait_for(f"{count} requests for {client_id}", lambda: len([r for r in seen(api) if r[1] == client_id]) >= count)
    return [r for r in seen(api) if r[1] == client_id]


async def check_sticky_and_spread(front, controls, api, args=None):
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


async def check_push_through_each_gateway(front, controls, api, args=None):
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


async def check_every_request_from_the_source(front, controls, api, args=None):
    await wait_for("every Disconnect", lambda: sum(r[0] == "GET" for r in seen(api)) == sum(r[0] == "DELETE" for r in seen(api)))
    rows = seen(api)
    assert rows, "the backend saw nothing"
    wrong = [r for r in rows if r[2] != SOURCE]
    assert not wrong, wrong
    # TLS only where a client came over wss:// (or a TLV said so); a CN only on the
    # Connect of a verified certificate; one X-Forwarded-Proto per connection.
    tls_ids = {"hp-tls-cert", "hp-tls-anon", "hp-tls-mallory", "hp-raw-conn", "hp-raw-sess",
               "hp-raw-unverified", "hp-raw-nocert", "hp-raw-nocn"}
    cns = {"hp-tls-cert": "charger-17", "hp-raw-conn": "charger-17", "hp-raw-sess": "charger-sess"}
    wrong = [r for r in rows if r.proto != ("https" if r.client in tls_ids else "http")]
    assert not wrong, f"X-Forwarded-Proto: {wrong}"
    wrong = [r for r in rows if r.cn != (cns.get(r.client, "-") if r.method == "GET" else "-")]
    assert not wrong, f"X-Client-Cert-CN: {wrong}"
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
    check_plain_ws_ignores_client_headers,
    check_ssl_tlv_straight_to_a_gateway,
    check_every_request_from_the_source,
]


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--front", required=True, help="HAProxy's host:port")
    parser.add_argument("--controls", nargs=2, required=True, help="the gateways' control URLs")
    parser.add_argument("--api", required=True, help="the PHP backend's URL")
    parser.add_argument("--tls-front", required=True, help="HAProxy's TLS host:port")
    parser.add_argument("--certs", required=True, help="the folder with ca.pem, client.*, mallory.*")
    parser.add_argument("--haproxy-log", required=True, help="HAProxy's stdout (the TLS frontend's log lines)")
    parser.add_argument("--gateways", nargs=2, required=True, help="the gateways' public host:port")
    args = parser.parse_args()
    host, port = args.front.rsplit(":", 1)
    front = (host, int(port))
    tls_host, tls_port = args.tls_front.rsplit(":", 1)
    args.tls_front = (tls_host, int(tls_port))
    args.gateways = [(h, int(p)) for h, p in (g.rsplit(":", 1) for g in args.gateways)]
    controls = [c.rstrip("/") for c in args.controls]
    api = args.api.rstrip("/")
    passed = failed = 0
    for check in CHECKS:
        try:
            await check(front, controls, api, args)
            print(f"ok   {check.__name__}")
            passed += 1
        except Exception as error:  # noqa: BLE001 - report and go on
            print(f"FAIL {check.__name__}: {type(error).__name__}: {error}")
            failed += 1
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
