<?php
// Stateless routes (the `api` group, under /api).

declare(strict_types=1);

use App\Events\UserNotified;
use App\Models\User;
use Illuminate\Http\Request;
use Illuminate\Support\Facades\Route;

// What a controller does when something happens to a user: broadcast a notice on the user's
// private channel through the configured broadcaster (redis: herald's RESP port). The socket
// named by X-Socket-ID, if any, is left out (toOthers()).
Route::post('/users/{user}/notify', function (User $user, Request $request) {
    broadcast(new UserNotified($user, (string) $request->input('note')))->toOthers();

    return ['sent' => true];
});
