<?php
// Fire App\Events\WechatLoginConfirmed the way a Laravel app's queue worker does: the real
// Illuminate\Broadcasting\BroadcastEvent job hands it to the real RedisBroadcaster, which
// PUBLISHes on `laravel_database_wechat-login.<ticket>` to herald's RESP port.
//
//   php examples/tutorial/fire.php --port 6379 --ticket 4f2a --token secret-token [--client predis]
//
// In an app this file is not needed: `event(new WechatLoginConfirmed($token, $ticket));` with
// BROADCAST_CONNECTION=redis (BROADCAST_DRIVER on Laravel 10 and older) does the same.

declare(strict_types=1);

require_once 'Illuminate/autoload.php';
require_once 'Predis/autoload.php';
require_once __DIR__ . '/app/Events/WechatLoginConfirmed.php';

use App\Events\WechatLoginConfirmed;
use Illuminate\Broadcasting\BroadcastEvent;
use Illuminate\Broadcasting\BroadcastManager;
use Illuminate\Config\Repository;
use Illuminate\Container\Container;
use Illuminate\Redis\RedisManager;

$opts = getopt('', ['port:', 'ticket:', 'token:', 'client::']);
foreach (['port', 'ticket', 'token'] as $required) {
    if (!isset($opts[$required])) {
        fwrite(STDERR, "usage: php fire.php --port P --ticket T --token X [--client phpredis|predis]\n");
        exit(2);
    }
}

// The slice of config/database.php and config/broadcasting.php that broadcasting reads.
$app = new Container();
Container::setInstance($app);
$app->instance('config', new Repository([
    'database' => ['redis' => [
        'client' => $opts['client'] ?? (extension_loaded('redis') ? 'phpredis' : 'predis'),
        'options' => ['prefix' => 'laravel_database_'],
        'default' => ['host' => '127.0.0.1', 'port' => (int) $opts['port'], 'database' => 0],
    ]],
    'broadcasting' => [
        'default' => 'redis',
        'connections' => ['redis' => ['driver' => 'redis', 'connection' => 'default']],
    ],
]));
$app->singleton('redis', fn ($app) => new RedisManager(
    $app,
    $app['config']['database.redis.client'],
    $app['config']['database.redis']
));

(new BroadcastEvent(new WechatLoginConfirmed($opts['token'], $opts['ticket'])))
    ->handle(new BroadcastManager($app));
