"""Service functions: what the routes do, with sessions passed in (never created here)."""
