"""hiclaw-bot: a Matrix chat bot that provisions and runs AI worker agents, teams and humans.

Every command becomes a durable operation whose steps are checkpointed in SQLite, so a retry or a
restart resumes at the failed step and never creates anything twice.
"""

__version__ = "0.1.0"
