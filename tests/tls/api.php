<?php
// The API server of tests/tls/: a stateless PHP router script that appends every request
// it gets to a JSON-lines log with all its X-* headers, so tls_test.py can read what a
// TLS connection told the API (X-Forwarded-Proto, X-Client-Cert-*) and see that a failed
// handshake made no request at all.
//
//   WS2API_TLS_LOG=/tmp/api.jsonl PHP_CLI_SERVER_WORKERS=4 php -S 127.0.0.1:8000 tests/tls/api.php
//
// Every request  one line {method, path, body, headers: {lower-case X-* name: value}}.
// Connect        GET /<ClientId>       `ok`
// Message        POST /<ClientId>      `echo: <body>`
// Disconnect     DELETE /<ClientId>    `ok`

$method = $_SERVER['REQUEST_METHOD'];
$path = rawurldecode(parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH) ?? '/');
$body = (string) file_get_contents('php://input');

$x = [];
foreach (getallheaders() as $name => $value) {
    if (stripos($name, 'x-') === 0) {
        $x[strtolower($name)] = $value;
    }
}
$entry = ['method' => $method, 'path' => $path, 'body' => $body, 'headers' => (object) $x];
// LOCK_EX: several workers may append at once.
file_put_contents(
    getenv('WS2API_TLS_LOG') ?: '/tmp/ws2api-tls.jsonl',
    json_encode($entry, JSON_INVALID_UTF8_SUBSTITUTE | JSON_UNESCAPED_SLASHES) . "\n",
    FILE_APPEND | LOCK_EX
);

http_response_code($method === 'GET' || $method === 'POST' || $method === 'DELETE' ? 200 : 405);
header('Content-Type: text/plain; charset=utf-8');
echo $method === 'POST' ? "echo: $body" : 'ok';
return true;
