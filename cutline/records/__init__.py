"""What a shoot reports: the ledger, the running tally, the summary and its cost."""
