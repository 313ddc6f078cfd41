<?php

// Add to your routes/web.php: the page the buyer waits on after paying (its buyer only).

use App\Models\Order;
use Illuminate\Http\Request;
use Illuminate\Support\Facades\Route;

Route::get('/orders/{order}', function (Request $request, Order $order) {
    abort_unless((int) $request->user()->id === (int) $order->user_id, 403);

    // In your app a Blade view that includes resources/js/ through Vite; a static page here,
    // so the whole browser side of the example is one file.
    return response()->file(__DIR__.'/../public/order.html');
})->middleware('auth');
