"""Views: loaded runs in, text out (tables, CSV, JSON, Markdown, HTML, show, diff, sparklines).

Nothing here opens a database: callers (the CLI, :mod:`greentrack.api`) load the rows and
series and pass them in.
"""
