<?php

namespace App\Models;

use Illuminate\Database\Eloquent\Model;

/**
 * An order of one user (the buyer), whose `status` goes pending → paid → shipped.
 */
class Order extends Model
{
    protected $fillable = ['user_id', 'status'];
}
