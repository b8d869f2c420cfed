"""Worker backends: where a worker's runtime lives (Docker, Kubernetes or a local process).

This package stands alone (it imports nothing from ``hiclaw_bot``) so that the runtime contract
can be tested, and reused, without the bot.
"""
