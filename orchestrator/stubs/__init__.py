"""Stand-ins for inference servers: loopback stub sites for development, demos and tests.

docs/gateway.md lets ``local`` sites without an endpoint be served by stub upstreams the gateway
starts on loopback; ``sovereign gateway --stub-upstreams`` serves every site that way. Nothing here
is a provider (providers place models; a stub only answers requests), so it lives beside them,
below the gateway, importing nothing but ``errors``.
"""
