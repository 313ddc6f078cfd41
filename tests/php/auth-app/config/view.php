<?php

declare(strict_types=1);

// Only the exception handler's error pages use views.
return [
    'paths' => [],
    'compiled' => storage_path('framework/views'),
];
