"""Running the probe unattended and safely: lock, data budgets, consent, privacy,
scheduling and set-up checks."""
