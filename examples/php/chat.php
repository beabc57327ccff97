<?php
// A chat server on ws2api in plain, stateless PHP: rooms are ws2api groups.
//
// Run it with PHP's built-in server (this file is the router script) and point ws2api at it:
//   WS2API_CONTROL=http://127.0.0.1:7002 PHP_CLI_SERVER_WORKERS=4 \
//       php -S 127.0.0.1:8000 examples/php/chat.php
//   ws2api --listen 127.0.0.1:7001 --control-listen 127.0.0.1:7002 --api-url http://127.0.0.1:8000/
// Then connect as a user, to a room (default `lobby`):
//   websocat 'ws://127.0.0.1:7001/alice?room=lobby'
// and type lines: each goes to everyone else in the room as `alice: <line>`;
// `/join <room>` moves you to another room (answer: `you are in <room>`);
// `/room` tells you where you are.
//
// PHP keeps no state between requests; ws2api does:
//   Connect  GET /<name>?room=R  answers `ok` with `X-Group-Join: R`: the user is in R
//                                before the 101.
//   Message  POST /<name>        `/room`: `you are in <room>`;
//                                `/join R2`: asks ws2api which room the user is in
//                                (GET {control}/<name>, "groups" in its JSON) and answers
//                                `X-Group-Leave: <old>`, `X-Group-Join: R2`;
//                                any other line: POST {control}/groups/<room>?except=<name>
//                                with `<name>: <line>`, and an empty answer.
//   Disconnect DELETE /<name>    `ok` (ws2api has already taken the user out of its room).
//
// Environment: WS2API_CONTROL (default http://127.0.0.1:7002), the control listener;
// WS2API_CONTROL_TOKEN, its --control-token if it has one. Needs only php-cli.

const NAME = '[A-Za-z0-9._~-]{1,128}'; // a ClientId, and a group name too
const DEFAULT_ROOM = 'lobby';

$control = rtrim(getenv('WS2API_CONTROL') ?: 'http://127.0.0.1:7002', '/');
$token = getenv('WS2API_CONTROL_TOKEN') ?: '';

function reply(int $status, string $body): void
{
    http_response_code($status);
    header('Content-Type: text/plain; charset=utf-8');
    // `php -S` sends no Content-Length by itself; an explicit one is safer for any client.
    header('Content-Length: ' . strlen($body));
    echo $body;
}

// One request to ws2api's control listener: [status, body], or [0, error] if unreachable.
function control(string $method, string $path, string $body = ''): array
{
    global $control, $token;
    $headers = "Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n";
    if ($token !== '') {
        $headers .= "Authorization: Bearer $token\r\n";
    }
    $ctx = stream_context_create(['http' => [
        'method' => $method,
        'protocol_version' => 1.1,
        'header' => $headers,
        'content' => $body,
        'timeout' => 5,
        'ignore_errors' => true, // the body of a 404 or 503, not a warning
    ]]);
    $answer = @file_get_contents($control . $path, false, $ctx);
    if ($answer === false || !isset($http_response_header[0])) {
        return [0, 'control listener unreachable'];
    }
    // The first header line is "HTTP/1.1 200 OK".
    return [(int) (explode(' ', $http_response_header[0])[1] ?? 0), $answer];
}

// The rooms the user is in, as ws2api knows them (normally exactly one).
function rooms_of(string $user): ?array
{
    [$status, $body] = control('GET', '/' . $user);
    if ($status !== 200) {
        return null;
    }
    $info = json_decode($body, true);
    return is_array($info['groups'] ?? null) ? $info['groups'] : null;
}

$method = $_SERVER['REQUEST_METHOD'];
$path = rawurldecode(parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH) ?? '/');
if (!preg_match('#^/(' . NAME . ')$#', $path, $m)) {
    reply(404, "no such endpoint\n");
    return true;
}
$user = $m[1];

switch ($method) {
    case 'GET': // Connect: join the room of the query.
        $room = $_GET['room'] ?? DEFAULT_ROOM;
        if (!is_string($room) || !preg_match('#^' . NAME . '$#', $room)) {
            reply(400, "bad room name\n"); // the client gets this 400 instead of the 101
            break;
        }
        header("X-Group-Join: $room");
        reply(200, 'ok');
        break;

    case 'POST': // Message: a line of chat, or a command.
        if (str_starts_with($_SERVER['CONTENT_TYPE'] ?? '', 'application/octet-stream')) {
            reply(200, ''); // binary messages mean nothing in this chat
            break;
        }
        $line = trim((string) file_get_contents('php://input'));
        if ($line === '') {
            reply(200, '');
            break;
        }
        $rooms = rooms_of($user);
        if ($rooms === null) {
            reply(200, "error: ws2api does not know you\n");
            break;
        }
        if ($line === '/room') {
            reply(200, $rooms ? 'you are in ' . implode(', ', $rooms) : 'you are in no room');
            break;
        }
        if (preg_match('#^/join\s+(\S+)$#', $line, $j)) {
            $room = $j[1];
            if (!preg_match('#^' . NAME . '$#', $room)) {
                reply(200, "bad room name: $room");
                break;
            }
            $old = array_values(array_diff($rooms, [$room]));
            if ($old) {
                header('X-Group-Leave: ' . implode(', ', $old));
            }
            header("X-Group-Join: $room");
            reply(200, "you are in $room");
            break;
        }
        $room = $rooms[0] ?? null;
        if ($room === null) {
            reply(200, 'you are in no room: /join <room>');
            break;
        }
        // Everyone in the room but the speaker. ws2api answers once every shard queued it.
        [$status, $body] = control('POST', '/groups/' . $room . '?except=' . $user, "$user: $line");
        reply(200, $status === 200 ? '' : "error: broadcast to $room failed ($status $body)");
        break;

    case 'DELETE': // Disconnect: ws2api took the user out of every room already.
        reply(200, 'ok');
        break;

    default:
        reply(405, "method not allowed\n");
}
return true;
