<?php
// Creates the application, as a Laravel skeleton's bootstrap/app.php does, on Debian's
// php-laravel-framework (Laravel 8.83, /usr/share/php/Illuminate) instead of Composer's vendor/:
// Debian's autoloader for the framework, a PSR-4 autoloader for App\ (what composer.json's
// "autoload" would give), and everything of one running instance under APP_STORAGE, so the
// source tree stays read-only: the .env (read on every request, as Laravel does: APP_KEY,
// DB_DATABASE, HERALD_REDIS_PORT), the storage directory (sessions, compiled views) and the
// provider and package manifests.

declare(strict_types=1);

require_once 'Illuminate/autoload.php';

spl_autoload_register(function (string $class): void {
    if (str_starts_with($class, 'App\\')) {
        $file = __DIR__ . '/../app/' . str_replace('\\', '/', substr($class, 4)) . '.php';
        if (is_file($file)) {
            require $file;
        }
    }
});

$storage = getenv('APP_STORAGE');
if (!$storage) {
    throw new RuntimeException('APP_STORAGE must name a writable directory');
}
foreach (['APP_SERVICES_CACHE' => 'services.php', 'APP_PACKAGES_CACHE' => 'packages.php'] as $name => $file) {
    if (getenv($name) === false) {
        putenv("$name=$storage/$file");
    }
}

$app = new Illuminate\Foundation\Application(dirname(__DIR__));
$app->useStoragePath($storage);
$app->useEnvironmentPath($storage);

$app->singleton(Illuminate\Contracts\Http\Kernel::class, App\Http\Kernel::class);
$app->singleton(Illuminate\Contracts\Debug\ExceptionHandler::class, App\Exceptions\Handler::class);

return $app;
