"""The trust boundaries of docs/SECURITY.md, each proved against the real thing it guards."""
