<?php
// The front controller of the channel-authorization app, as in every Laravel app: build the
// application, hand the captured request to the HTTP kernel (global and route middleware, the
// router, the exception handler), send the response, run terminable middleware (the session is
// saved there). Served by PHP's built-in server, this file is the router script:
//
//   APP_STORAGE=/tmp/x php -S 127.0.0.1:0 tests/php/auth-app/public/index.php
//
// with /tmp/x/.env holding APP_KEY, DB_DATABASE and HERALD_REDIS_PORT, and the database
// made by database/seed.php (tests/clients/fixtures/laravel-auth-app.mjs does all this).

declare(strict_types=1);

use Illuminate\Contracts\Http\Kernel;
use Illuminate\Http\Request;

$app = require __DIR__ . '/../bootstrap/app.php';

$kernel = $app->make(Kernel::class);
$response = $kernel->handle($request = Request::capture())->send();
$kernel->terminate($request, $response);
