<?php
// Browser routes (the `web` group: encrypted cookies, the session, CSRF verification).

declare(strict_types=1);

use App\Models\User;
use Illuminate\Http\Request;
use Illuminate\Support\Facades\Auth;
use Illuminate\Support\Facades\Route;

// Sign in as {user} (a test's stand-in for a login form): starts the session, sets the
// laravel_session and XSRF-TOKEN cookies, and answers the CSRF token a page would put in its
// <meta name="csrf-token">.
Route::get('/login/{user}', function (User $user, Request $request) {
    Auth::login($user);

    return ['id' => $user->id, 'csrf_token' => $request->session()->token()];
});

// Any state-changing browser request: VerifyCsrfToken wants the session's token (419 without).
Route::post('/profile', function (Request $request) {
    return ['id' => optional($request->user())->id];
});
