<?php
// Broadcast one event through the real Laravel redis broadcaster, so tests see exactly the
// bytes a Laravel app sends to herald.
//
// It boots the minimum of Debian's php-laravel-framework (Laravel 8.83): a Container with a
// config repository, the real Illuminate\Redis\RedisManager (client phpredis or predis) bound
// as `redis`, and the real Illuminate\Broadcasting\BroadcastManager, whose `redis` driver builds
// Illuminate\Broadcasting\Broadcasters\RedisBroadcaster exactly as an app does
// (connection `broadcast`, prefix from `database.redis.options.prefix`).
//
// Usage:
//   php tests/php/broadcast.php --port P --client phpredis|predis --channel C [--channel C2 ...]
//       --event E --data JSON [--host 127.0.0.1] [--password X] [--username U] [--db N]
//       [--socket S] [--prefix laravel_database_] [--repeat N] [--tls-ca CA.pem]
//
//   --channel   repeatable; each is a channel name as the app writes it (`orders.1`,
//               `private-orders.1`, `presence-room.7`), without the prefix.
//   --data      a JSON object: the event's public properties (Laravel's broadcastWith()).
//   --socket    the socket id to exclude (what Laravel takes from X-Socket-ID for toOthers());
//               it is put in the payload as `socket` by hand, where Laravel's BroadcastEvent
//               would put it. tests/php/app.php goes through Laravel's own path instead: a
//               request with X-Socket-ID and broadcast(...)->toOthers().
//   --prefix    database.redis.options.prefix; default `laravel_database_` (Laravel <= 11 with
//               APP_NAME=Laravel). Pass --prefix '' for none.
//   --repeat    broadcast the same event N times over one connection (default 1).
//   --tls-ca    connect with TLS (`scheme` tls: predis's `tls://`, phpredis's `tls://` host),
//               verifying herald's certificate and name against this CA.
// Exit status 0 when every broadcast returned; otherwise the exception is printed on stderr and
// the status is 1. Nothing is printed on success.
//
// What arrives (checked against redis-server 7 with MONITOR and `redis-cli psubscribe '*'`):
//   phpredis, password pw, db 3:
//     "AUTH" "pw"   "SELECT" "3"
//     "EVAL" "for i = 2, #ARGV do\n  redis.call('publish', ARGV[i], ARGV[1])\nend" "0"
//            "{\"event\":\"E\",\"data\":{...,\"socket\":\"S\"},\"socket\":\"S\"}"
//            "laravel_database_C" "laravel_database_C2"
//   predis sends the same AUTH, SELECT and EVAL (predis 1.1 sends no HELLO / CLIENT SETINFO).
//   The script's SHA1 is 6f799f6e3f4ab9f8b891f6405d5fc1348a6a0595. Laravel 8 builds `data`
//   before it pulls `socket` out, so `socket` appears inside `data` too. Without --socket the
//   envelope ends with "socket":null. PHP's json_encode escapes non-ASCII (`\u00e9`) and `/`
//   (`\/`), and an empty --data '{}' goes out as "data":[]. SELECT is always sent (SELECT 0 by
//   default, since an app's config has `database`); AUTH only with --password. With --username,
//   predis sends `AUTH user pw` while phpredis 5.3 under Laravel 8 still sends `AUTH pw`.
//   Raw bytes (phpredis and predis alike, one command per write, each waits for its reply):
//     *2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n  *2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n
//     *5\r\n$4\r\nEVAL\r\n$65\r\n<script>\r\n$1\r\n0\r\n$42\r\n<payload>\r\n$18\r\nlaravel_database_a\r\n
//   The channel prefix is added by the broadcaster itself (the client's key prefix does not touch
//   EVAL arguments), so subscribers see `laravel_database_C`.

declare(strict_types=1);

require_once 'Illuminate/autoload.php';
require_once 'Predis/autoload.php';

use Illuminate\Broadcasting\BroadcastManager;
use Illuminate\Config\Repository;
use Illuminate\Container\Container;
use Illuminate\Redis\RedisManager;

function usage(string $why): void
{
    fwrite(STDERR, "broadcast.php: $why\n");
    fwrite(STDERR, "usage: php tests/php/broadcast.php --port P --client phpredis|predis --channel C "
        . "[--channel C2 ...] --event E --data JSON [--host H] [--password X] [--username U] "
        . "[--db N] [--socket S] [--prefix P] [--repeat N] [--tls-ca CA.pem]\n");
    exit(2);
}

/** @return array<string, list<string>> */
function parse_args(array $argv): array
{
    $args = [];
    for ($i = 1; $i < count($argv); $i++) {
        $flag = $argv[$i];
        if (substr($flag, 0, 2) !== '--') {
            usage("unexpected argument $flag");
        }
        if (!array_key_exists($i + 1, $argv)) {
            usage("$flag needs a value");
        }
        $args[substr($flag, 2)][] = $argv[++$i];
    }
    $known = ['host', 'port', 'password', 'username', 'db', 'client', 'channel', 'event', 'data',
        'socket', 'prefix', 'repeat', 'tls-ca'];
    foreach (array_keys($args) as $name) {
        if (!in_array($name, $known, true)) {
            usage("unknown flag --$name");
        }
    }
    return $args;
}

$args = parse_args($argv);
$one = function (string $name, ?string $default = null) use ($args): ?string {
    return isset($args[$name]) ? end($args[$name]) : $default;
};

foreach (['port', 'client', 'channel', 'event', 'data'] as $required) {
    if (!isset($args[$required])) {
        usage("--$required is required");
    }
}
$client = $one('client');
if (!in_array($client, ['phpredis', 'predis'], true)) {
    usage('--client is phpredis or predis');
}
if ($client === 'phpredis' && !extension_loaded('redis')) {
    fwrite(STDERR, "broadcast.php: the phpredis extension is not loaded (apt-get install php-redis)\n");
    exit(1);
}
$data = json_decode($one('data'), true);
if (!is_array($data)) {
    usage('--data must be a JSON object');
}
if ($one('socket') !== null) {
    $data['socket'] = $one('socket');
}

$connection = [
    'host' => $one('host', '127.0.0.1'),
    'port' => (int) $one('port'),
    'database' => (int) $one('db', '0'),
    'password' => $one('password'),
    'read_timeout' => 5,
    'timeout' => 5,
];
if ($one('username') !== null) {
    $connection['username'] = $one('username');
}
if ($one('tls-ca') !== null) {
    $verify = ['cafile' => $one('tls-ca'), 'verify_peer' => true, 'verify_peer_name' => true];
    $connection['scheme'] = 'tls';
    $connection['ssl'] = $verify;                  // predis
    $connection['context'] = ['stream' => $verify]; // phpredis
}

$app = new Container();
Container::setInstance($app);
$app->instance('config', new Repository([
    'database' => [
        'redis' => [
            'client' => $client,
            'options' => ['prefix' => $one('prefix', 'laravel_database_')],
            'broadcast' => $connection,
        ],
    ],
    'broadcasting' => [
        'default' => 'redis',
        'connections' => [
            'redis' => ['driver' => 'redis', 'connection' => 'broadcast'],
        ],
    ],
]));
$app->singleton('redis', function ($app) {
    $config = $app['config']['database.redis'];
    return new RedisManager($app, $config['client'], $config);
});

try {
    $broadcaster = (new BroadcastManager($app))->connection('redis');
    $repeat = max(1, (int) $one('repeat', '1'));
    for ($i = 0; $i < $repeat; $i++) {
        $broadcaster->broadcast($args['channel'], $one('event'), $data);
    }
} catch (Throwable $e) {
    fwrite(STDERR, 'broadcast.php: ' . get_class($e) . ': ' . $e->getMessage() . "\n");
    exit(1);
}
