<?php
// auth-app's database/seed.php (the users Ann (1), Bob (2) and Cy (3), printed as JSON), then
// examples/payment's orders migration and five pending orders: 1 to 4 are Ann's, 5 is Bob's.
// Same environment as index.php.

declare(strict_types=1);

use App\Models\Order;

require __DIR__ . '/bootstrap.php';
require __DIR__ . '/../auth-app/database/seed.php';

(require PAYMENT_EXAMPLE . '/database/migrations/2025_01_01_000000_create_orders_table.php')->up();
foreach ([1, 1, 1, 1, 2] as $buyer) {
    Order::create(['user_id' => $buyer]);
}
