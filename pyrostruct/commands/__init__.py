"""CLI subcommands: one module each, registered in ``pyrostruct.cli.COMMAND_MODULES``."""
