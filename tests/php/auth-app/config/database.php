<?php

declare(strict_types=1);

return [
    'default' => 'sqlite',

    'connections' => [
        'sqlite' => [
            'driver' => 'sqlite',
            'database' => env('DB_DATABASE'),
            'prefix' => '',
            'foreign_key_constraints' => true,
        ],
    ],

    // herald's RESP port stands where Redis would.
    'redis' => [
        'client' => env('REDIS_CLIENT', 'phpredis'),
        'options' => ['prefix' => 'laravel_database_'],
        'default' => [
            'host' => '127.0.0.1',
            'port' => (int) env('HERALD_REDIS_PORT'),
            'database' => 0,
        ],
    ],
];
