"""The `unnoise` command line: one module per command."""
