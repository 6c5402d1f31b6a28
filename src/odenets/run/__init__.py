"""One run's life: its lock, skip/resume and result record (`lifecycle`), the config checks made before any
work (`validation`), the Trainer with its callbacks (`training`), and test-time re-integration (`integration`).
It builds data, models and tasks; reporting never imports it."""
