<?php

declare(strict_types=1);

namespace App\Models;

use Illuminate\Foundation\Auth\User as Authenticatable;

/**
 * The skeleton's user. `api_token` holds the SHA-256 of the user's bearer token (the `api`
 * guard is Laravel's TokenGuard with `hash => true`), as Sanctum keeps only a token's hash.
 */
class User extends Authenticatable
{
    public $timestamps = false;

    protected $fillable = ['name', 'api_token'];

    protected $hidden = ['api_token', 'remember_token'];
}
