<?php
// What the app does where it learns that an order was paid (the payment provider's webhook) or
// shipped: update the order and dispatch the event, which Laravel broadcasts through the redis
// broadcaster into herald's RESP port. Same environment as index.php.
//
//   php tests/php/payment-app/dispatch.php paid|shipped ORDER_ID
//
// Exit status 0 once Laravel has sent it (herald answered the EVAL); otherwise the exception is
// on stderr and the status is not 0.

declare(strict_types=1);

use App\Events\OrderPaid;
use App\Events\OrderShipped;
use App\Models\Order;
use Illuminate\Contracts\Http\Kernel;

$app = require __DIR__ . '/bootstrap.php';
$app->make(Kernel::class)->bootstrap();

[, $what, $id] = $argv + [null, null, null];
$event = ['paid' => OrderPaid::class, 'shipped' => OrderShipped::class][$what] ?? null;
if ($event === null || !ctype_digit((string) $id)) {
    fwrite(STDERR, "usage: php dispatch.php paid|shipped ORDER_ID\n");
    exit(2);
}
$order = Order::findOrFail((int) $id);
$order->update(['status' => $what]);
$event::dispatch($order);
