#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/seeds/<target>/ from byte literals of the unit tests
(src/http/request.rs, src/http/proxy.rs, src/api/answer/tests.rs, src/ws/codec/tests.rs).

answer_codec and ws_decoder read their first byte as the split position: every seed is written
with selector 0x80 (split near the middle) and 0x00 (split at 0). Re-run after editing:
    python3 fuzz/seeds/make_seeds.py
"""
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))

BROWSER = (
    b"GET /chat-42?token=x%20y HTTP/1.1\r\n"
    b"Host: gw.example.com\r\n"
    b"Connection: Upgrade\r\n"
    b"Pragma: no-cache\r\n"
    b"Cache-Control: no-cache\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36\r\n"
    b"Upgrade: websocket\r\n"
    b"Origin: https://example.com\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\n"
    b"Accept-Language: en-US,en;q=0.9\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    b"\r\n"
)
HELLO_FRAME = bytes([0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58])

REQUEST = [
    BROWSER,
    BROWSER + HELLO_FRAME,
    b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: h\r\nupgrade: h2c ,WebSocket\r\nconnection: foo\r\n"
    b"CONNECTION:upgrade\r\nsec-websocket-version:  13 \r\n"
    b"Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\r\n",
    b"GET /a HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Version: 13, 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    b"POST /abc HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /abc HTTP/1.1\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\nabc",
    b"POST /abc HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"POST /abc HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST /abc HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST /abc HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    b"GET /a HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\n\r\n",
    b"GET /a?b?c=d HTTP/1.1\r\nX-Dup: one\r\nx-dup: two\r\nX-Empty:\r\n\r\n",
    b"GET /A.b_c~d-9 HTTP/1.1\r\n\r\n",
    b"GET /%41 HTTP/1.1\r\n\r\n",
    b"GET /" + b"x" * 129 + b" HTTP/1.1\r\n\r\n",
    b"GET /a HTTP/9.9\r\n\r\n",
    b"GET /a HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(65)) + b"\r\n",
    b"GET /a HTTP/1.1\nHost: h\n\n",
]

V2 = b"\r\n\r\n\x00\r\nQUIT\n"
PROXY = [
    b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
    b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n",
    b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
    b"PROXY TCP4 0.0.0.0 255.255.255.255 0 0\r\n",
    b"PROXY UNKNOWN\r\n",
    b"PROXY UNKNOWN 192.168.0.1 192.168.0.11 56324 443\r\n",
    b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 0443\r\n",
    b"PROXY TCP6 fe80::1%eth0 2001:db8::2 56324 443\r\n",
    V2 + b"\x21\x11\x00\x0c\xc0\xa8\x00\x01\xc0\xa8\x00\x0b\xdc\x04\x01\xbb",
    V2 + b"\x21\x21\x00\x24"
    + b"\x20\x01\x0d\xb8" + b"\x00" * 11 + b"\x01"
    + b"\x20\x01\x0d\xb8" + b"\x00" * 11 + b"\x02"
    + b"\xdc\x04\x01\xbb",
    V2 + b"\x21\x11\x00\x17\x0a\x00\x00\x01\x0a\x00\x00\x02\x30\x39\x00\x50"
    + b"\x01\x00\x02h2\x04\x00\x03\x00\x00\x00",
    V2 + b"\x21\x21\x00\x32"
    + b"\x20\x01\x0d\xb8" + b"\x00" * 11 + b"\x01"
    + b"\x20\x01\x0d\xb8" + b"\x00" * 11 + b"\x02"
    + b"\xdc\x04\x01\xbb\x02\x00\x0bexample.com",
    V2 + b"\x20\x00\x00\x00",
    V2 + b"\x20\xff\x00\x02\x00\x00",
    V2 + b"\x21\x00\x00\x00",
    V2 + b"\x21\x22\x00\x24" + b"\x07" * 36,
    V2 + b"\x21\x31\x00\xd8" + b"/" * 216,
    V2 + b"\x21\x11\x00\x0b",
]

ANSWER = [
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n"
    b"1A ; x\r\n, chunked world!!!!!!!!!!!\r\n0\r\nX-Trailer: yes\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\nX-Id: 1\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end",
    b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nhi",
    b"HTTP/1.1 200 OK\r\nConnection: upgrade, Close\r\nContent-Length: 3\r\n\r\nbye",
    b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
    b"3\r\nabc\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none"
    b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nraw",
    b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
]

MASK = bytes([0x37, 0xFA, 0x21, 0x3D])
FIN, CONT, TEXT, BIN, CLOSE, PING, PONG = 0x80, 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def masked(first, payload):
    f = bytearray([first])
    n = len(payload)
    if n <= 125:
        f.append(0x80 | n)
    elif n <= 0xFFFF:
        f.append(0x80 | 126)
        f += n.to_bytes(2, "big")
    else:
        f.append(0x80 | 127)
        f += n.to_bytes(8, "big")
    f += MASK
    f += bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return bytes(f)


euro = "h€".encode()
CONVERSATION = (
    HELLO_FRAME
    + masked(TEXT, euro[:2])
    + masked(FIN | PING, b"p")
    + masked(CONT, euro[2:])
    + masked(FIN | PONG, b"")
    + masked(FIN | CONT, b"!")
    + masked(FIN | BIN, bytes(range(200)))
    + masked(FIN | CLOSE, (1001).to_bytes(2, "big") + b"going away")
)
WS = [
    HELLO_FRAME,
    CONVERSATION,
    masked(FIN | BIN, bytes(range(256)) * 300),  # 64-bit length
    masked(BIN, b"ab") + masked(FIN | PING, b"1") + masked(CONT, b"cd")
    + masked(FIN | PONG, b"2") + masked(FIN | CONT, b"ef"),
    masked(TEXT, b"\xe2") + masked(CONT, b"\x82") + masked(FIN | CONT, b"\xac"),
    masked(FIN | TEXT, b"ok\xff"),
    masked(FIN | CLOSE, b""),
    masked(FIN | CLOSE, (1000).to_bytes(2, "big") + b"\xce\xba\xe1\xbd"),
    masked(FIN | CLOSE, (1005).to_bytes(2, "big")),
    masked(FIN | PING, b"\x00" * 126),
    bytes([0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0]) + MASK,
    bytes([0x82, 0xFF, 0, 0, 0, 0, 0x80, 0, 0, 0]) + MASK,
    bytes([0x81, 0x05]) + b"Hello",  # unmasked
    bytes([0xC1, 0x80]) + MASK,  # rsv1
    bytes([0x83, 0x80]) + MASK,  # reserved opcode
]


def write(target, seeds, selectors=None):
    d = os.path.join(HERE, target)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for i, s in enumerate(seeds):
        for sel in selectors or [None]:
            data = s if sel is None else bytes([sel]) + s
            name = "seed-%02d" % i if sel is None else "seed-%02d-%02x" % (i, sel)
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)


write("request_head", REQUEST)
write("proxy_header", PROXY)
write("answer_codec", ANSWER, [0x80, 0x00])
write("ws_decoder", WS, [0x80, 0x00])
