<?php
// What `php artisan migrate --seed` would do for this app, without Artisan: boots the app as
// the HTTP kernel does (configuration, providers), creates the users table in the SQLite file
// named by DB_DATABASE and adds Ann (1), Bob (2) and Cy (3), each with a fresh bearer token.
// Prints the plain tokens once, as JSON (as Sanctum's createToken() shows plainTextToken once):
//   {"users":[{"id":1,"name":"Ann","token":"…"},…]}
// Same environment as public/index.php (APP_STORAGE, and its .env).

declare(strict_types=1);

use App\Models\User;
use Illuminate\Database\Schema\Blueprint;
use Illuminate\Support\Facades\Schema;
use Illuminate\Support\Str;

$app = require __DIR__ . '/../bootstrap/app.php';
$app->make(Illuminate\Contracts\Http\Kernel::class)->bootstrap();

Schema::create('users', function (Blueprint $table) {
    $table->id();
    $table->string('name');
    $table->string('api_token', 64)->unique();
    $table->rememberToken();
});

$users = [];
foreach (['Ann', 'Bob', 'Cy'] as $name) {
    $token = Str::random(40);
    $user = User::create(['name' => $name, 'api_token' => hash('sha256', $token)]);
    $users[] = ['id' => $user->id, 'name' => $user->name, 'token' => $token];
}
echo json_encode(['users' => $users]), "\n";
