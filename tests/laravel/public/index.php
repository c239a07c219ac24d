<?php

use Illuminate\Contracts\Http\Kernel;
use Illuminate\Http\Request;

define('LARAVEL_START', microtime(true));

require __DIR__.'/../bootstrap/autoload.php';

$app = require_once __DIR__.'/../bootstrap/app.php';

$kernel = $app->make(Kernel::class);

$response = $kernel->handle(
    $request = Request::capture()
)->send();

// The test counts answers by status (php -S logs none with a router script).
file_put_contents('php://stderr', sprintf(
    "answered %d %s %s\n", $response->getStatusCode(), $request->getMethod(), $request->getPathInfo()
));

$kernel->terminate($request, $response);
