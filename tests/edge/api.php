<?php
// The API server of tests/edge/: a stateless PHP router script that logs every request
// it gets, one JSON line each, so edge_test.py can tell which requests ws2api made (a
// refused upgrade must make none) and when (the order and pace of a throttled client's
// messages).
//
//   WS2API_EDGE_LOG=/tmp/api.jsonl PHP_CLI_SERVER_WORKERS=4 \
//       php -S 127.0.0.1:8000 tests/edge/api.php
//
// Every request  one line {method, id, body, t, origin, xff, conn} appended to
//                $WS2API_EDGE_LOG (t: microtime(true) when the request arrived).
// Connect        GET /<ClientId>       answers `ok`.
// Message        POST /<ClientId>      answers `echo: <body>`; a body starting with
//                                      `quiet` gets an empty answer (nothing sent back).
// Disconnect     DELETE /<ClientId>    answers `ok` (the body is the close reason).

$t = microtime(true);
$logFile = getenv('WS2API_EDGE_LOG') ?: '/tmp/ws2api-edge.jsonl';

$method = $_SERVER['REQUEST_METHOD'];
$path = rawurldecode(parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH) ?? '/');

function reply(int $status, string $body): void
{
    http_response_code($status);
    header('Content-Type: text/plain; charset=utf-8');
    header('Content-Length: ' . strlen($body));
    echo $body;
}

if (!preg_match('#^/([A-Za-z0-9._~-]{1,128})$#', $path, $m)) {
    reply(404, "no such endpoint\n");
    return true;
}
$id = $m[1];
$body = (string) file_get_contents('php://input');

$line = json_encode([
    'method' => $method,
    'id' => $id,
    'body' => $body,
    't' => $t,
    'origin' => $_SERVER['HTTP_ORIGIN'] ?? null,
    'xff' => $_SERVER['HTTP_X_FORWARDED_FOR'] ?? null,
    'conn' => $_SERVER['HTTP_X_CONNECTION_ID'] ?? null,
], JSON_INVALID_UTF8_SUBSTITUTE | JSON_UNESCAPED_SLASHES);
// LOCK_EX: several workers may append at once.
file_put_contents($logFile, $line . "\n", FILE_APPEND | LOCK_EX);

switch ($method) {
    case 'GET':    // Connect
    case 'DELETE': // Disconnect
        reply(200, 'ok');
        break;
    case 'POST':   // Message
        reply(200, str_starts_with($body, 'quiet') ? '' : "echo: $body");
        break;
    default:
        reply(405, "method not allowed\n");
}
return true;
