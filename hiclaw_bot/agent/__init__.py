"""The reference worker agent: a small, real Matrix agent that runs inside a worker.

It is the default command of the process backend and the ``hiclaw/worker-agent`` image, and it
behaves as a worker must towards the bot: it finds its files through the environment
(:mod:`~hiclaw_bot.agent.env`), reads its Matrix login and allow lists from ``openclaw.json`` in
object storage, joins the rooms it is invited to by allowed users, answers mentions with a short
reply, and reports activity back to object storage. It stands in for a full OpenClaw worker where
one cannot run (tests, the dev stack) and shows what the bot's contract with a worker is.

It runs inside the worker, not the bot, so it imports no bot layer (chat, flows, engine, storage,
config): only the object-store client and the shared types.
"""
