"""Leader election on a ``coordination.k8s.io/v1`` Lease, so that only one replica of the bot acts.

The bot's state is one SQLite file, and SQLite wants one writer. With ``ha.enabled`` a process
first becomes the holder of a Lease and only then opens the database and starts the engine; a
second replica waits as a hot standby. When the holder stops renewing (killed, partitioned,
hung), the Lease expires and the standby takes over, resuming the operations the engine left
unfinished. When a holder loses the Lease it stops everything and the process exits non-zero,
so Kubernetes restarts it as a standby.

Why not ``kubernetes.aio.leaderelection`` (kubernetes 37.0.1): its leader measures the renew
deadline from the start of each round of attempts rather than from its last successful renewal,
and its API calls have no timeout, so one hung request keeps an old leader acting after the
Lease has expired for everyone else; its periods must be at least a second each (slow tests); it
stamps local naive time with ``Z``; it logs a traceback for every lost race; and it never
releases the Lease on a clean shutdown, so every rollout waits a full lease duration. The loop
in :mod:`.elector` is small, uses the same ``CoordinationV1Api`` calls, and keeps the safety
argument checkable:

* every write is a ``replace`` guarded by the ``resourceVersion`` just read (or a ``create``),
  so of two candidates racing for an expired Lease exactly one wins (the other gets 409);
* a standby trusts no clock but its own: it takes over only when the Lease has not changed
  (same ``resourceVersion``) for ``lease_duration`` since it first received that version;
* the leader counts ``renew_deadline`` from the moment it *sent* its last successful renewal,
  bounds every request by what is left of it, and gives up leadership when it runs out; as
  ``renew_deadline < lease_duration`` it stops acting before any standby may start;
* after giving up, whatever the work still does must finish within ``lease_duration -
  renew_deadline``; past that the process exits at once (the engine's checkpoints make a hard
  exit safe: it is the same as a crash, which the crash tests cover).
"""

EXIT_LEADERSHIP_LOST = 3
"""The process exit status after losing the Lease (``hiclaw-bot run``, and the overrun exit)."""


class LeadershipLost(Exception):
    """This process no longer holds the Lease: it must stop acting now."""


__all__ = ["EXIT_LEADERSHIP_LOST", "LeadershipLost"]

