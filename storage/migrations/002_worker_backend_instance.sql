-- Every worker keeps the backend it was created on: its kind was stored already, now its instance
-- too. Rows from before hold NULL, read as the configured instance (the only one there was).
ALTER TABLE workers ADD COLUMN backend_instance TEXT;
