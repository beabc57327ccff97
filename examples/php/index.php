<?php
// ws2api example backend: a plain, stateless PHP app.
//
// Run with PHP's built-in server (this file is the router script):
//   WS2API_CONTROL=http://127.0.0.1:7002/ WS2API_PHP_LOG=/tmp/ws2api-php.log \
//   PHP_CLI_SERVER_WORKERS=4 php -S 127.0.0.1:8000 examples/php/index.php
// and point ws2api at it:  ws2api --api-url http://127.0.0.1:8000/
//
// What ws2api sends us (see SPEC.md):
//   GET    /<ClientId>[?query]  a client wants to connect: answer "ok" to accept
//   POST   /<ClientId>          a client sent a message (the request body)
//   DELETE /<ClientId>          a client is gone; body = close reason, header X-Close-Code
// Every request carries X-Connection-Id and X-Forwarded-For.
//
// Extra endpoints for demos and tests (not called by ws2api):
//   GET /_push/<ClientId>?msg=...  push msg to that client through ws2api's control listener
//   GET /_log                      the disconnect log

$control = getenv('WS2API_CONTROL') ?: 'http://127.0.0.1:7002/';
$logFile = getenv('WS2API_PHP_LOG') ?: '/tmp/ws2api-php.log';

$method = $_SERVER['REQUEST_METHOD'];
$path = rawurldecode(parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH) ?? '/');

// Plain-text answer with an explicit status.
function reply(int $status, string $body, string $type = 'text/plain; charset=utf-8'): void
{
    http_response_code($status);
    header('Content-Type: ' . $type);
    // `php -S` sends no Content-Length by itself (it ends the body by closing the
    // connection); an explicit length keeps any HTTP client on the safe side.
    header('Content-Length: ' . strlen($body));
    echo $body;
}

// --- demo/test endpoints -------------------------------------------------

if ($method === 'GET' && $path === '/_log') {
    reply(200, is_file($logFile) ? (string) file_get_contents($logFile) : '');
    return true;
}

if ($method === 'GET' && preg_match('#^/_push/([A-Za-z0-9._~-]{1,128})$#', $path, $m)) {
    // POST the message to ws2api's control listener: POST {control}<ClientId>.
    // Kept as its own request on purpose, not done while answering a client's POST:
    // the demo then never depends on re-entrancy (a single-worker `php -S` that
    // blocks on a request which needs that same worker would deadlock).
    $ctx = stream_context_create(['http' => [
        'method' => 'POST',
        'protocol_version' => 1.1,
        'header' => "Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n",
        'content' => $_GET['msg'] ?? '',
        'timeout' => 5,
        'ignore_errors' => true, // give us the body of 404/503 answers instead of a warning
    ]]);
    $body = @file_get_contents(rtrim($control, '/') . '/' . rawurlencode($m[1]), false, $ctx);
    if ($body === false || !isset($http_response_header[0])) {
        reply(502, "control listener unreachable\n");
        return true;
    }
    // First header line is "HTTP/1.1 200 OK": pass the control listener's status through.
    $status = (int) (explode(' ', $http_response_header[0])[1] ?? 502);
    reply($status, "$status $body");
    return true;
}

// --- the ws2api protocol -------------------------------------------------

if (!preg_match('#^/([A-Za-z0-9._~-]{1,128})$#', $path, $m)) {
    reply(404, "no such endpoint\n");
    return true;
}
$id = $m[1];

switch ($method) {
    case 'GET': // Connect: exactly "ok" accepts; any other 2xx body makes ws2api answer 403.
        reply(200, $id === 'banned' ? 'no' : 'ok');
        break;

    case 'POST': // Message: a non-empty 2xx body goes back to the client.
        $body = (string) file_get_contents('php://input');
        if ($body === 'push-me') {
            reply(200, ''); // empty answer: ws2api sends nothing back
        } elseif (str_starts_with($_SERVER['CONTENT_TYPE'] ?? '', 'application/octet-stream')) {
            reply(200, $body, 'application/octet-stream'); // binary in, binary echo out
        } else {
            reply(200, "echo: $body");
        }
        break;

    case 'DELETE': // Disconnect: exactly one per accepted connection.
        $code = $_SERVER['HTTP_X_CLOSE_CODE'] ?? '-';
        $reason = str_replace("\n", ' ', (string) file_get_contents('php://input'));
        // LOCK_EX: with PHP_CLI_SERVER_WORKERS > 1 several workers may append at once.
        file_put_contents($logFile, "$id $code $reason\n", FILE_APPEND | LOCK_EX);
        reply(200, 'ok');
        break;

    default:
        reply(405, "method not allowed\n");
}
return true;
