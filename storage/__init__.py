"""The bot's SQLite store: migrations, a single-writer connection and typed repositories.

All SQL of the project lives here; nothing above this package writes a query.
"""
