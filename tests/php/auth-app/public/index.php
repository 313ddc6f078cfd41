<?php
// The front controller of the channel-authorization app, as in every Laravel app: build the
// application, hand the captured request to the HTTP kernel (global and route middleware, the
// router, the exception handler), send the response, run terminable middleware (the session is
// saved there). Served by PHP's built-in server, this file is the router script:
//
//   APP_KEY=base64:… APP_STORAGE=/tmp/x DB_DATABASE=/tmp/x/database.sqlite HERALD_REDIS_PORT=P \
//     php -S 127.0.0.1:0 tests/php/auth-app/public/index.php
//
// (tests/clients/fixtures/laravel-auth-app.mjs does this, after database/seed.php.)

declare(strict_types=1);

use Illuminate\Contracts\Http\Kernel;
use Illuminate\Http\Request;

$app = require __DIR__ . '/../bootstrap/app.php';

$kernel = $app->make(Kernel::class);
$response = $kernel->handle($request = Request::capture())->send();
$kernel->terminate($request, $response);
