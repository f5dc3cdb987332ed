"""The `clpose` command line: a typer app (app.py) and one short module per subcommand."""
