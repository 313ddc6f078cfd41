<?php

// Excerpt of a Laravel app's config/broadcasting.php. Laravel 11 and newer do not publish
// this file by default (`php artisan install:broadcasting` or `php artisan config:publish
// broadcasting` creates it) and their version has no `redis` entry: add it as below.

return [

    // Laravel 11+: BROADCAST_CONNECTION. Laravel <= 10: 'default' => env('BROADCAST_DRIVER', 'null').
    'default' => env('BROADCAST_CONNECTION', 'null'),

    'connections' => [

        // The redis driver publishes through the `broadcast` connection of
        // config/database.php, i.e. to herald, with Laravel's EVAL script.
        'redis' => [
            'driver' => 'redis',
            'connection' => 'broadcast',
        ],

        // ... 'reverb', 'pusher', 'ably', 'log', 'null' as generated ...

    ],

];
