<?php

namespace App\Events;

use Illuminate\Broadcasting\Channel;
use Illuminate\Contracts\Broadcasting\ShouldBroadcast;

/**
 * Fired when the phone has confirmed a QR-code login: the waiting browser tab, which
 * listens on the login ticket's channel, receives the token and moves on.
 */
class WechatLoginConfirmed implements ShouldBroadcast
{
    /** Public properties are the broadcast data: the tab receives {"token": ...}. */
    public string $token;

    private string $ticket;

    public function __construct(string $token, string $ticket)
    {
        $this->token = $token;
        $this->ticket = $ticket;
    }

    /** One public channel per login ticket, e.g. `wechat-login.4f2a`. */
    public function broadcastOn(): array
    {
        return [new Channel('wechat-login.' . $this->ticket)];
    }

    /** The event name the client listens for, instead of the class name. */
    public function broadcastAs(): string
    {
        return 'wechat.login';
    }
}
