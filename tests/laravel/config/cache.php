<?php

// The database store, as docs/laravel.md recommends: shared by every PHP worker.
return [
    'default' => 'database',
    'stores' => [
        'database' => [
            'driver' => 'database',
            'table' => 'cache',
            'connection' => null,
            'lock_connection' => null,
        ],
    ],
    'prefix' => 'wagate_test_',
];
