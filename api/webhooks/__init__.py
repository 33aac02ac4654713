"""Webhooks: Standard Webhooks signing, an outbox in the database, and a delivery loop with retries."""
