<?php
// The API server of tests/groups/: a stateless PHP router script whose answers carry
// the control headers the test asks for, so groups_test.py drives every case of SPEC
// "Groups and broadcast" and "Control headers in the API's answers".
//
//   WS2API_GROUPS_LOG=/tmp/disconnects.jsonl PHP_CLI_SERVER_WORKERS=4 \
//       php -S 127.0.0.1:8000 tests/groups/api.php
//
// Connect  GET /<ClientId>?join=a,b&leave=c   answers `ok`; every `join=` becomes one
//          X-Group-Join header, every `leave=` one X-Group-Leave (values as given).
// Message  POST /<ClientId>, text:
//          /join <names>            X-Group-Join: <names>, body `joined <names>`
//          /leave <names>           X-Group-Leave: <names>, body `left <names>`
//          /both <joins> | <leaves> both headers in one answer, body `both`
//          /repeat <a> | <b> ...    one X-Group-Join header per part, body `repeated`
//          /fail <names>            status 500 with X-Group-Join: <names> (must be ignored)
//          /close <code> [reason]   X-Close-Code / X-Close-Reason, body `closing`
//          /closequiet <code> [r]   the same with an empty body
//          anything else            `echo: <text>`
//          binary                   the same bytes back, binary
// Disconnect DELETE /<ClientId>    one JSON line {id, conn, code, reason} appended to
//          $WS2API_GROUPS_LOG, answers `ok`.

$logFile = getenv('WS2API_GROUPS_LOG') ?: '/tmp/ws2api-groups.jsonl';

$method = $_SERVER['REQUEST_METHOD'];
$path = rawurldecode(parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH) ?? '/');

function reply(int $status, string $body, string $type = 'text/plain; charset=utf-8'): void
{
    http_response_code($status);
    header('Content-Type: ' . $type);
    header('Content-Length: ' . strlen($body));
    echo $body;
}

// Each `key=value` pair of the raw query string, in order (repeats kept, unlike $_GET).
function query_values(string $key): array
{
    $values = [];
    foreach (explode('&', $_SERVER['QUERY_STRING'] ?? '') as $pair) {
        [$k, $v] = array_pad(explode('=', $pair, 2), 2, '');
        if (urldecode($k) === $key) {
            $values[] = urldecode($v);
        }
    }
    return $values;
}

if (!preg_match('#^/([A-Za-z0-9._~-]{1,128})$#', $path, $m)) {
    reply(404, "no such endpoint\n");
    return true;
}
$id = $m[1];

switch ($method) {
    case 'GET': // Connect
        foreach (query_values('join') as $names) {
            header("X-Group-Join: $names", false);
        }
        foreach (query_values('leave') as $names) {
            header("X-Group-Leave: $names", false);
        }
        reply(200, 'ok');
        break;

    case 'POST': // Message
        $body = (string) file_get_contents('php://input');
        if (str_starts_with($_SERVER['CONTENT_TYPE'] ?? '', 'application/octet-stream')) {
            reply(200, $body, 'application/octet-stream');
            break;
        }
        [$command, $rest] = array_pad(explode(' ', $body, 2), 2, '');
        switch ($command) {
            case '/join':
                header("X-Group-Join: $rest");
                reply(200, "joined $rest");
                break;
            case '/leave':
                header("X-Group-Leave: $rest");
                reply(200, "left $rest");
                break;
            case '/both':
                [$joins, $leaves] = array_pad(explode('|', $rest, 2), 2, '');
                header('X-Group-Join: ' . trim($joins));
                header('X-Group-Leave: ' . trim($leaves));
                reply(200, 'both');
                break;
            case '/repeat':
                foreach (explode('|', $rest) as $part) {
                    header('X-Group-Join: ' . trim($part), false);
                }
                reply(200, 'repeated');
                break;
            case '/fail':
                header("X-Group-Join: $rest");
                reply(500, "failed $rest");
                break;
            case '/close':
            case '/closequiet':
                [$code, $reason] = array_pad(explode(' ', $rest, 2), 2, '');
                header("X-Close-Code: $code");
                if ($reason !== '') {
                    header("X-Close-Reason: $reason");
                }
                reply(200, $command === '/close' ? 'closing' : '');
                break;
            default:
                reply(200, "echo: $body");
        }
        break;

    case 'DELETE': // Disconnect: exactly one per accepted connection.
        $line = json_encode([
            'id' => $id,
            'conn' => $_SERVER['HTTP_X_CONNECTION_ID'] ?? '',
            'code' => $_SERVER['HTTP_X_CLOSE_CODE'] ?? '',
            'reason' => (string) file_get_contents('php://input'),
        ]);
        // LOCK_EX: several workers may append at once.
        file_put_contents($logFile, $line . "\n", FILE_APPEND | LOCK_EX);
        reply(200, 'ok');
        break;

    default:
        reply(405, "method not allowed\n");
}
return true;
