<?php
// The front controller of the payment app (bootstrap.php), for PHP's built-in server:
//
//   APP_STORAGE=/tmp/x php -S 127.0.0.1:0 tests/php/payment-app/index.php
//
// with /tmp/x/.env as for auth-app (APP_KEY, DB_DATABASE, HERALD_REDIS_PORT) plus
// BROADCAST_CONNECTION, and the database made by seed.php. Besides the app's routes it serves
// the scripts examples/payment/public/order.html loads from /js/, as an app's public/js/ would:
// the browser builds from tests/clients/node_modules and examples/pusher-recovery/herald-recovery.js
// (404 until that file exists).

declare(strict_types=1);

use Illuminate\Contracts\Http\Kernel;
use Illuminate\Http\Request;

$modules = __DIR__ . '/../../clients/node_modules';
$scripts = [
    '/js/socket.io.min.js' => "$modules/socket.io-client/dist/socket.io.min.js",
    '/js/pusher.min.js' => "$modules/pusher-js/dist/web/pusher.min.js",
    '/js/echo.iife.js' => "$modules/laravel-echo/dist/echo.iife.js",
    '/js/herald-recovery.js' => __DIR__ . '/../../../examples/pusher-recovery/herald-recovery.js',
];
$script = $scripts[parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH)] ?? null;
if ($script !== null) {
    if (!is_file($script)) {
        http_response_code(404);
        return;
    }
    header('Content-Type: text/javascript');
    readfile($script);
    return;
}

$app = require __DIR__ . '/bootstrap.php';

$kernel = $app->make(Kernel::class);
$response = $kernel->handle($request = Request::capture())->send();
$kernel->terminate($request, $response);
