<?php

// Debian's framework and its dependencies (Symfony, Carbon, Monolog, ...).
require_once '/usr/share/php/Illuminate/autoload.php';

// The application's classes, as Composer's PSR-4 "App\\" => "app/" would map them.
spl_autoload_register(function (string $class): void {
    if (strncmp($class, 'App\\', 4) !== 0) {
        return;
    }
    $file = __DIR__.'/../app/'.str_replace('\\', '/', substr($class, 4)).'.php';
    if (is_file($file)) {
        require $file;
    }
});
