<?php

declare(strict_types=1);

namespace App\Events;

use App\Models\User;
use Illuminate\Broadcasting\InteractsWithSockets;
use Illuminate\Broadcasting\PrivateChannel;
use Illuminate\Contracts\Broadcasting\ShouldBroadcastNow;
use Illuminate\Foundation\Events\Dispatchable;

/**
 * A notice for one user, on that user's private channel (the one Laravel's notifications use).
 */
class UserNotified implements ShouldBroadcastNow
{
    use Dispatchable;
    use InteractsWithSockets;

    public string $note;

    private int $userId;

    public function __construct(User $user, string $note)
    {
        $this->userId = (int) $user->id;
        $this->note = $note;
    }

    public function broadcastOn(): PrivateChannel
    {
        return new PrivateChannel('App.Models.User.' . $this->userId);
    }
}
