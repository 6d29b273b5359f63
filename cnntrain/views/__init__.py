"""What the user sees: consoles, the progress callback, every rich table, the predictions CSV."""
