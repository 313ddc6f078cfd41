<?php

namespace App\Events;

use App\Models\Order;
use Illuminate\Broadcasting\InteractsWithBroadcasting;
use Illuminate\Broadcasting\InteractsWithSockets;
use Illuminate\Broadcasting\PrivateChannel;
use Illuminate\Contracts\Broadcasting\ShouldBroadcastNow;
use Illuminate\Foundation\Events\Dispatchable;

/**
 * What happens to a paid order next, on the same private channel as OrderPaid, so the page
 * receives the two in the order they were sent. (examples/laravel's OrderShipped shows
 * broadcastAs() and several channels; this one is the next step of the payment page.)
 */
class OrderShipped implements ShouldBroadcastNow
{
    use Dispatchable, InteractsWithBroadcasting, InteractsWithSockets;

    public function __construct(public Order $order)
    {
        $this->broadcastVia('redis');
    }

    public function broadcastOn(): PrivateChannel
    {
        return new PrivateChannel('orders.'.$this->order->id);
    }

    /** @return array<string, mixed> */
    public function broadcastWith(): array
    {
        return ['order' => ['id' => $this->order->id, 'status' => 'shipped']];
    }
}
