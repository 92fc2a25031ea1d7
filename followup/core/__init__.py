"""Pure decisions: no database, no clock, no provider. Each takes what it needs (and `now`) as arguments."""
