"""Stand-ins for services that cannot run on these machines (see the reference on simulators).

Each speaks real HTTP on 127.0.0.1 and validates what it stores against the official schema, so
the production clients run against it unmodified.
"""
