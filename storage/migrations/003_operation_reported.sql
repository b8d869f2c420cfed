-- An operation's final message is sent once: ``reported_at`` holds the ``finished_at`` whose result
-- went out, so a start finds what finished unreported (a crash between the two) and a retried
-- operation that finished again is reported again. Older operations count as reported: a flood
-- of old results on upgrade would be worse than none.
ALTER TABLE operations ADD COLUMN reported_at REAL;
UPDATE operations SET reported_at = finished_at WHERE finished_at IS NOT NULL;
