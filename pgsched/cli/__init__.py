"""The pgsched command line (typer + rich). The core package never imports this."""
