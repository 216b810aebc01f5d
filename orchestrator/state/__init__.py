"""State: the embedded SQLite store (default), object-storage stores, leases, the audit chain."""
