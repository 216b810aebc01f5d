"""Reconcile: carry a plan out across sites with bounded concurrency, retries and interlocks."""
