"""The routing gateway (docs/gateway.md): serve each request only where it is legal."""
