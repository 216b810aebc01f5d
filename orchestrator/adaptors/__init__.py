"""One adaptor per cloud SDK, below the providers and the state backends.

The idea is SkyPilot's ``sky/adaptors/``: everything Sovereign needs from a cloud's client
library sits in one module per cloud, and nowhere else may import that library (an
import-linter contract in ``pyproject.toml`` names these modules). Each adaptor owns

- client creation, imported lazily so ``validate``, ``explain`` and the gateway never pay for
  boto3 or the Google client (and shared where the SDK asks for it);
- the client's retry configuration: SDK retries where the SDK is the one layer (the state
  stores), none where the reconciler retries the change (the providers), so that no call is
  retried by two layers (docs/providers.md, "Retries");
- error translation into the one exception tree of ``orchestrator.errors``: transient
  (throttling, 5xx, connection failures) or permanent (denied, rejected), each naming the
  permission a call needed, so that no botocore or google.api_core exception escapes.

``aws`` serves ``providers.aws`` and ``state.s3``; ``gcp`` serves ``providers.gcp`` and
``state.gcs``.
"""
