<?php
// A stand-in for Pusher\Pusher of the Composer package pusher/pusher-php-server, which Debian
// does not package and Laravel's PusherBroadcaster (the parent of Laravel 11's
// ReverbBroadcaster) needs. Only what that broadcaster calls to answer /broadcasting/auth:
// socket_auth() and presence_auth(), signing as the Pusher protocol defines it (HMAC-SHA256, with
// the app secret, of `<socket_id>:<channel>` or `<socket_id>:<channel>:<channel_data>`), answering
// {"auth":"<key>:<hex signature>"[,"channel_data":"…"]}, and refusing a socket id that is not
// Pusher's `<digits>.<digits>` as the package does. Publishing (trigger()) is not here: the tests
// broadcast through the redis broadcaster.

declare(strict_types=1);

namespace Pusher;

use InvalidArgumentException;

class Pusher
{
    private string $key;

    private string $secret;

    public function __construct(string $key, string $secret, string $appId, array $options = [])
    {
        $this->key = $key;
        $this->secret = $secret;
    }

    public function socket_auth(string $channel, string $socketId, ?string $customData = null): string
    {
        if (!preg_match('/\A\d+\.\d+\z/', $socketId)) {
            throw new InvalidArgumentException("Invalid socket ID $socketId");
        }
        $signed = $customData === null ? "$socketId:$channel" : "$socketId:$channel:$customData";
        $answer = ['auth' => $this->key . ':' . hash_hmac('sha256', $signed, $this->secret)];
        if ($customData !== null) {
            $answer['channel_data'] = $customData;
        }
        return json_encode($answer, JSON_THROW_ON_ERROR);
    }

    public function presence_auth(string $channel, string $socketId, $userId, $userInfo = null): string
    {
        $user = ['user_id' => $userId];
        if ($userInfo) {
            $user['user_info'] = $userInfo;
        }
        return $this->socket_auth($channel, $socketId, json_encode($user, JSON_THROW_ON_ERROR));
    }
}
