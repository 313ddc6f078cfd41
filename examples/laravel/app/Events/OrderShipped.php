<?php

// A broadcast event as an app writes it. With the redis driver and the config in this
// directory, `OrderShipped::dispatch($order)` makes Laravel send herald
//   EVAL <broadcast script> 0 {"event":"order.shipped","data":{"order":{...},"socket":null},"socket":null}
//        laravel_database_orders.42 laravel_database_private-App.Models.User.7
// and herald delivers `order.shipped` on `orders.42` and `private-App.Models.User.7` to the
// socket.io and Pusher clients subscribed there (Echo: `.listen('.order.shipped', ...)`, with
// the leading dot because broadcastAs() names the event).

namespace App\Events;

use App\Models\Order;
use Illuminate\Broadcasting\Channel;
use Illuminate\Broadcasting\InteractsWithSockets;
use Illuminate\Broadcasting\PrivateChannel;
use Illuminate\Contracts\Broadcasting\ShouldBroadcast;
use Illuminate\Foundation\Events\Dispatchable;
use Illuminate\Queue\SerializesModels;

class OrderShipped implements ShouldBroadcast
{
    // InteractsWithSockets gives ->dontBroadcastToCurrentUser(), which broadcast(...)->toOthers()
    // uses: the payload's `socket` is the X-Socket-ID of the request, and herald skips that socket.
    use Dispatchable, InteractsWithSockets, SerializesModels;

    public function __construct(public Order $order)
    {
    }

    /** @return array<int, \Illuminate\Broadcasting\Channel> */
    public function broadcastOn(): array
    {
        return [
            new Channel('orders.'.$this->order->id),
            new PrivateChannel('App.Models.User.'.$this->order->user_id),
        ];
    }

    // Without broadcastAs() the event name is the class name (App\Events\OrderShipped).
    public function broadcastAs(): string
    {
        return 'order.shipped';
    }

    /** @return array<string, mixed> */
    public function broadcastWith(): array
    {
        return ['order' => ['id' => $this->order->id, 'status' => 'shipped']];
    }
}
