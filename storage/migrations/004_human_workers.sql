-- Per-worker access for humans (`!human create|invite NAME --workers a,b`): the workers a human may
-- talk to besides those its level grants, as a JSON list of worker names.
ALTER TABLE humans ADD COLUMN workers TEXT NOT NULL DEFAULT '[]';
