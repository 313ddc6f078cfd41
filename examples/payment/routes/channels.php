<?php

// Add to your routes/channels.php. `private-orders.{id}` is for the order's buyer only: Laravel
// finds the Order from the id in the channel name (implicit binding, as for routes; an unknown
// id is refused) and allows the signed-in user who placed it. Every other user, and a guest,
// gets 403, so no one learns when someone else's order is paid.

use App\Models\Order;
use App\Models\User;
use Illuminate\Support\Facades\Broadcast;

Broadcast::channel('orders.{order}', function (User $user, Order $order) {
    return (int) $user->id === (int) $order->user_id;
});
