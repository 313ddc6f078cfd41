<?php

// Excerpt of a Laravel app's config/database.php: only the `redis` array changes.
// Keep `default` and `cache` on the real Redis; add a `broadcast` connection for herald.
// (herald is a pub/sub broker: it refuses GET, SET, LPUSH and other key-value commands, so
// cache, queue and session must not point at it.)

use Illuminate\Support\Str;

return [

    // ... 'default', 'connections', 'migrations' as generated ...

    'redis' => [

        'client' => env('REDIS_CLIENT', 'phpredis'), // or 'predis': both work with herald

        'options' => [
            'cluster' => env('REDIS_CLUSTER', 'redis'),
            // The broadcaster adds this prefix to every channel name. Laravel <= 11 generated
            // this line; newer skeletons generate
            //   Str::slug((string) env('APP_NAME', 'laravel')).'-database-'
            // herald strips laravel_database_ and laravel-database- by default; for any
            // other value run herald with --redis-prefix <value>.
            'prefix' => env('REDIS_PREFIX', Str::slug(env('APP_NAME', 'laravel'), '_').'_database_'),
        ],

        'default' => [
            'url' => env('REDIS_URL'),
            'host' => env('REDIS_HOST', '127.0.0.1'),
            'username' => env('REDIS_USERNAME'),
            'password' => env('REDIS_PASSWORD'),
            'port' => env('REDIS_PORT', '6379'),
            'database' => env('REDIS_DB', '0'),
        ],

        'cache' => [
            'url' => env('REDIS_URL'),
            'host' => env('REDIS_HOST', '127.0.0.1'),
            'username' => env('REDIS_USERNAME'),
            'password' => env('REDIS_PASSWORD'),
            'port' => env('REDIS_PORT', '6379'),
            'database' => env('REDIS_CACHE_DB', '1'),
        ],

        // herald. The database number is accepted and ignored (pub/sub ignores it in Redis too).
        'broadcast' => [
            'host' => env('HERALD_REDIS_HOST', '127.0.0.1'),
            'username' => env('HERALD_REDIS_USERNAME'),
            'password' => env('HERALD_REDIS_PASSWORD'),
            'port' => env('HERALD_REDIS_PORT', '6379'),
            'database' => '0',
        ],

    ],

];
