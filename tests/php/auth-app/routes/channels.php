<?php
// The app's channels, as routes/channels.php of a Laravel app. Both guards may sign a user in:
// `web` (the session cookie) and `api` (a bearer token); Laravel tries them in order, and a
// request that neither signs in is refused with 403 before any callback runs.

declare(strict_types=1);

use App\Models\User;
use Illuminate\Support\Facades\Broadcast;

$guards = ['guards' => ['web', 'api']];

// The skeleton's own channel (the one Laravel's notifications broadcast on): only its user.
Broadcast::channel('App.Models.User.{id}', function (User $user, $id) {
    return (int) $user->id === (int) $id;
}, $guards);

// A presence channel: every signed-in user, known to the others by id and name.
Broadcast::channel('chat.{room}', function (User $user, string $room) {
    return ['id' => $user->id, 'name' => $user->name];
}, $guards);
