"""Runs that wait for people, read from the Prefect API: the review and sign-off queues, the client share."""
