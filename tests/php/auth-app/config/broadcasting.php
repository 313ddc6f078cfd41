<?php

declare(strict_types=1);

return [
    'default' => 'redis',

    'connections' => [
        'redis' => ['driver' => 'redis', 'connection' => 'default'],
    ],
];
