<?php

return [
    'name' => 'wagate-contract-test',
    'env' => 'testing',
    'debug' => (bool) env('APP_DEBUG', false),
    'url' => 'http://localhost',
    'timezone' => 'UTC',
    'locale' => 'en',
    'fallback_locale' => 'en',
    'key' => env('APP_KEY', 'base64:'.base64_encode(str_repeat('k', 32))),
    'cipher' => 'AES-256-CBC',

    'providers' => [
        Illuminate\Cache\CacheServiceProvider::class,
        Illuminate\Database\DatabaseServiceProvider::class,
        Illuminate\Database\MigrationServiceProvider::class, // php artisan migrate
        Illuminate\Foundation\Providers\ComposerServiceProvider::class, // needed by the migrate commands
        Illuminate\Encryption\EncryptionServiceProvider::class,
        Illuminate\Filesystem\FilesystemServiceProvider::class,
        Illuminate\Foundation\Providers\FoundationServiceProvider::class,
        Illuminate\Hashing\HashServiceProvider::class,
        Illuminate\Pipeline\PipelineServiceProvider::class,
        Illuminate\Translation\TranslationServiceProvider::class,
        Illuminate\Validation\ValidationServiceProvider::class,
        Illuminate\View\ViewServiceProvider::class, // response() needs it

        App\Providers\RouteServiceProvider::class,
        // From docs/laravel.md:
        App\Providers\WagateServiceProvider::class,
    ],

    'aliases' => [],
];
