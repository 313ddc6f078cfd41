<?php
// examples/payment inside the channel-authorization app (tests/php/auth-app), as an app that
// copied the example has it: App\Events\OrderPaid and OrderShipped and App\Models\Order (found
// under examples/payment/app), the `orders.{order}` channel rule and the order page's route.
// On top of auth-app's configuration:
//   - broadcasting: the `redis` connection on a separate `broadcast` Redis connection pointed at
//     herald's RESP port (HERALD_REDIS_PORT), as the main README sets it up, and a `reverb`
//     connection for herald's development Pusher app (Laravel 8's `pusher` driver: Laravel 11's
//     `reverb` driver is the same class with another name). BROADCAST_CONNECTION picks the
//     default, which answers /broadcasting/auth: `redis` for Echo's socket.io connector (herald
//     asks the app), `reverb` for Echo's reverb connector (the browser asks the app, herald checks
//     the signature). The events go through `redis` either way (they say broadcastVia('redis')).
//   - Pusher\Pusher from Pusher.php: Debian does not package pusher/pusher-php-server.
// Returns the application, as auth-app/bootstrap/app.php does; same environment (APP_STORAGE and
// its .env). Used by index.php (the front controller), seed.php and dispatch.php.

declare(strict_types=1);

use Illuminate\Foundation\Bootstrap\LoadConfiguration;
use Illuminate\Support\Facades\Route;

const PAYMENT_EXAMPLE = __DIR__ . '/../../../examples/payment';

spl_autoload_register(function (string $class): void {
    if (str_starts_with($class, 'App\\')) {
        $file = PAYMENT_EXAMPLE . '/app/' . str_replace('\\', '/', substr($class, 4)) . '.php';
        if (is_file($file)) {
            require $file;
        }
    }
});
require_once __DIR__ . '/Pusher.php';

$app = require __DIR__ . '/../auth-app/bootstrap/app.php';

$app->afterBootstrapping(LoadConfiguration::class, function ($app): void {
    $config = $app['config'];
    $config->set('database.redis.broadcast', [
        'host' => '127.0.0.1',
        'port' => (int) env('HERALD_REDIS_PORT'),
        'database' => 0,
    ]);
    $config->set('broadcasting.default', env('BROADCAST_CONNECTION', 'redis'));
    $config->set('broadcasting.connections.redis', ['driver' => 'redis', 'connection' => 'broadcast']);
    $config->set('broadcasting.connections.reverb', [
        'driver' => 'pusher',
        'key' => env('REVERB_APP_KEY', 'herald-key'),
        'secret' => env('REVERB_APP_SECRET', 'herald-secret'),
        'app_id' => env('REVERB_APP_ID', 'herald'),
    ]);
});

$app->booted(function (): void {
    Route::middleware('web')->group(PAYMENT_EXAMPLE . '/routes/web.php');
    require PAYMENT_EXAMPLE . '/routes/channels.php';
});

return $app;
