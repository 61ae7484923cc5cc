"""Subcommands of the ``wmsim`` command line, one module each (see ``agents.cli.COMMAND_MODULES``)."""
