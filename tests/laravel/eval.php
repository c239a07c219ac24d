<?php

// Runs the PHP code given as the first argument inside the booted
// application and prints what it returns as JSON, as
// `php artisan tinker --execute` would (Debian has no tinker).

require __DIR__.'/bootstrap/autoload.php';

$app = require __DIR__.'/bootstrap/app.php';
$app->make(Illuminate\Contracts\Console\Kernel::class)->bootstrap();

echo json_encode(eval($argv[1]));
