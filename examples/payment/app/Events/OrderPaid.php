<?php

namespace App\Events;

use App\Models\Order;
use Illuminate\Broadcasting\InteractsWithBroadcasting;
use Illuminate\Broadcasting\InteractsWithSockets;
use Illuminate\Broadcasting\PrivateChannel;
use Illuminate\Contracts\Broadcasting\ShouldBroadcastNow;
use Illuminate\Foundation\Events\Dispatchable;

/**
 * The payment of an order is confirmed: the buyer's page, listening on the order's private
 * channel, shows "paid". Dispatch it where your app learns of the payment (the payment
 * provider's webhook handler):
 *
 *     $order->update(['status' => 'paid']);
 *     OrderPaid::dispatch($order);
 *
 * Laravel sends herald
 *     EVAL <broadcast script> 0 {"event":"App\\Events\\OrderPaid","data":{"order":{"id":1,"status":"paid"},"socket":null},"socket":null}
 *          laravel_database_private-orders.1
 * and herald delivers it on `private-orders.1` (Echo: `Echo.private('orders.1').listen('OrderPaid', ...)`).
 */
class OrderPaid implements ShouldBroadcastNow
{
    use Dispatchable, InteractsWithBroadcasting, InteractsWithSockets;

    public function __construct(public Order $order)
    {
        // Through herald's RESP port (the `redis` connection of config/broadcasting.php) whatever
        // BROADCAST_CONNECTION says: with Echo's reverb connector the default connection is
        // `reverb`, only so that /broadcasting/auth signs (README.md).
        $this->broadcastVia('redis');
    }

    // Private: whether an order is paid is its buyer's business (routes/channels.php).
    public function broadcastOn(): PrivateChannel
    {
        return new PrivateChannel('orders.'.$this->order->id);
    }

    /** @return array<string, mixed> What the page receives; not the whole model. */
    public function broadcastWith(): array
    {
        return ['order' => ['id' => $this->order->id, 'status' => 'paid']];
    }
}
