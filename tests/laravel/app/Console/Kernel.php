<?php

namespace App\Console;

use Illuminate\Foundation\Console\Kernel as ConsoleKernel;

/** Only the framework's commands (migrate) are needed. */
class Kernel extends ConsoleKernel
{
}
