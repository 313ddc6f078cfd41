<?php
// A Laravel app in one file, served by PHP's built-in web server, whose one route fires a
// broadcast as a controller does: `broadcast(new OrderShipped($id))->toOthers()`. Which socket
// is left out is decided by Laravel itself, as in an app: PendingBroadcast::toOthers() calls
// InteractsWithSockets::dontBroadcastToCurrentUser(), which asks Broadcast::socket() for the
// current request's `X-Socket-ID` header (the header Laravel Echo's HTTP interceptors add);
// the event dispatcher hands the ShouldBroadcastNow event to the BroadcastManager, whose
// BroadcastEvent job puts the event's public properties (`socket` among them) in the payload,
// and the RedisBroadcaster PUBLISHes it to herald. tests/php/broadcast.php, by contrast, puts
// `socket` in the payload by hand.
//
// It boots the minimum of Debian's php-laravel-framework (Laravel 8.83): a Container with the
// facades pointed at it, a config repository, the real RedisManager, events dispatcher, bus
// dispatcher and BroadcastManager, and the HTTP request captured from the server.
//
// Usage:
//   HERALD_REDIS_PORT=P [HERALD_REDIS_CLIENT=phpredis|predis] php -S 127.0.0.1:0 tests/php/app.php
//
//   POST /orders/{id}/ship   fires App\Events\OrderShipped {"id": id} on private-orders.{id}
//                            (published as laravel_database_private-orders.{id}), leaving out
//                            the socket named by the request's X-Socket-ID header, if any.
//                            Answers 200 {"socket": <what Laravel took from the header, or null>}.
// Anything else is a 404. A failure is a 500 with the exception's class and message.

declare(strict_types=1);

namespace {
    require_once 'Illuminate/autoload.php';
    require_once 'Predis/autoload.php';
}

namespace App\Events {
    use Illuminate\Broadcasting\InteractsWithSockets;
    use Illuminate\Broadcasting\PrivateChannel;
    use Illuminate\Contracts\Broadcasting\ShouldBroadcastNow;

    class OrderShipped implements ShouldBroadcastNow
    {
        use InteractsWithSockets;

        public int $id;

        public function __construct(int $id)
        {
            $this->id = $id;
        }

        public function broadcastOn(): PrivateChannel
        {
            return new PrivateChannel('orders.' . $this->id);
        }
    }
}

namespace {
    use App\Events\OrderShipped;
    use Illuminate\Broadcasting\BroadcastManager;
    use Illuminate\Bus\Dispatcher as BusDispatcher;
    use Illuminate\Config\Repository;
    use Illuminate\Container\Container;
    use Illuminate\Contracts\Broadcasting\Factory as BroadcastingFactory;
    use Illuminate\Contracts\Bus\Dispatcher as BusDispatcherContract;
    use Illuminate\Events\Dispatcher as EventDispatcher;
    use Illuminate\Http\Request;
    use Illuminate\Redis\RedisManager;
    use Illuminate\Support\Facades\Broadcast;
    use Illuminate\Support\Facades\Facade;

    function respond(int $status, array $body): void
    {
        http_response_code($status);
        header('Content-Type: application/json');
        echo json_encode($body);
    }

    $client = getenv('HERALD_REDIS_CLIENT') ?: (extension_loaded('redis') ? 'phpredis' : 'predis');
    $app = new Container();
    Container::setInstance($app);
    Facade::setFacadeApplication($app);
    $app->instance('config', new Repository([
        'database' => ['redis' => [
            'client' => $client,
            'options' => ['prefix' => 'laravel_database_'],
            'default' => ['host' => '127.0.0.1', 'port' => (int) getenv('HERALD_REDIS_PORT'), 'database' => 0],
        ]],
        'broadcasting' => [
            'default' => 'redis',
            'connections' => ['redis' => ['driver' => 'redis', 'connection' => 'default']],
        ],
    ]));
    $app->singleton('redis', fn ($app) => new RedisManager(
        $app,
        $app['config']['database.redis.client'],
        $app['config']['database.redis']
    ));
    $app->singleton('events', fn ($app) => new EventDispatcher($app));
    $app->singleton(BusDispatcherContract::class, fn ($app) => new BusDispatcher($app));
    $app->singleton(BroadcastingFactory::class, fn ($app) => new BroadcastManager($app));
    $app->instance('request', Request::capture());

    $request = $app['request'];
    if ($request->method() !== 'POST' || !preg_match('#^/orders/(\d+)/ship$#', $request->getPathInfo(), $m)) {
        respond(404, ['message' => 'Not Found']);
        return;
    }
    try {
        // The PendingBroadcast dispatches the event when it is destroyed: at the end of this statement.
        broadcast(new OrderShipped((int) $m[1]))->toOthers();
        respond(200, ['socket' => Broadcast::socket()]);
    } catch (Throwable $e) {
        respond(500, ['exception' => get_class($e), 'message' => $e->getMessage()]);
    }
}
