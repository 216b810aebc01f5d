"""The routing gateway (SPEC 6): serve each request only where it is legal."""
