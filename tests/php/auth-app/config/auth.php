<?php

declare(strict_types=1);

return [
    'defaults' => ['guard' => 'web'],

    'guards' => [
        // The browser: the user id in the session.
        'web' => ['driver' => 'session', 'provider' => 'users'],
        // An SPA or a mobile app: `Authorization: Bearer <token>`, looked up by its SHA-256
        // (Laravel's TokenGuard; Sanctum, which does the same with its own table, is not in Debian).
        'api' => ['driver' => 'token', 'provider' => 'users', 'hash' => true],
    ],

    'providers' => [
        'users' => ['driver' => 'eloquent', 'model' => App\Models\User::class],
    ],
];
