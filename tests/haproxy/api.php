<?php
// A minimal API server for tests/haproxy/run.sh: accepts every client, echoes
// messages, and records what every request ws2api makes says about its client
// (address, connection id, TLS, verified client certificate), so the test can check
// that what HAProxy saw reached the backend.
//
//   GET    /<ClientId>   "ok"                  (Connect)
//   POST   /<ClientId>   "echo: <body>"        (Message)
//   DELETE /<ClientId>   "ok"                  (Disconnect)
//   GET    /_seen        the log, one request per line, six space-separated fields:
//                        METHOD ClientId X-Forwarded-For X-Connection-Id X-Forwarded-Proto X-Client-Cert-CN
//
// Every header field is rawurlencode()d (a value with spaces stays one field) and is
// '-' when the header is absent.
//
// Run as the router script of `php -S`, with HAPROXY_TEST_LOG naming the log file.

$log = getenv('HAPROXY_TEST_LOG') ?: '/tmp/ws2api-haproxy-test.log';
$method = $_SERVER['REQUEST_METHOD'];
$path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH) ?? '/';

function reply(int $status, string $body): void
{
    http_response_code($status);
    header('Content-Type: text/plain; charset=utf-8');
    header('Content-Length: ' . strlen($body));
    echo $body;
}

// A request header for the log: '-' when absent, else URL-encoded.
function field(string $name): string
{
    $value = $_SERVER['HTTP_' . strtoupper(str_replace('-', '_', $name))] ?? null;
    return $value === null ? '-' : rawurlencode($value);
}

if ($method === 'GET' && $path === '/_seen') {
    reply(200, is_file($log) ? (string) file_get_contents($log) : '');
    return true;
}

if (!preg_match('#^/([A-Za-z0-9._~-]{1,128})$#', $path, $m)) {
    reply(404, "not found\n");
    return true;
}
$id = $m[1];
$fields = [$method, $id];
foreach (['X-Forwarded-For', 'X-Connection-Id', 'X-Forwarded-Proto', 'X-Client-Cert-CN'] as $name) {
    $fields[] = field($name);
}
file_put_contents($log, implode(' ', $fields) . "\n", FILE_APPEND | LOCK_EX);

switch ($method) {
    case 'GET':
    case 'DELETE':
        reply(200, 'ok');
        break;
    case 'POST':
        reply(200, 'echo: ' . file_get_contents('php://input'));
        break;
    default:
        reply(405, "method not allowed\n");
}
return true;
