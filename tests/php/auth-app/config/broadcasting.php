<?php

declare(strict_types=1);

// Only the redis broadcaster: its /broadcasting/auth answers are what herald's socket.io edge
// expects from --auth-endpoint (laravel-echo-server's shapes). The pusher broadcaster cannot run
// here: Laravel 8's PusherBroadcaster signs with Pusher\Pusher (socket_auth, presence_auth) from
// the Composer package pusher/pusher-php-server, which Debian does not package.
return [
    'default' => 'redis',

    'connections' => [
        'redis' => ['driver' => 'redis', 'connection' => 'default'],
    ],
];
