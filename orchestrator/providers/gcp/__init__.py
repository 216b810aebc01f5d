"""GCP: GCS artifact buckets and deployment intent records per site.

google-cloud-storage is imported only on first use inside the submodules, so importing this
package (as the provider registry does) stays cheap.
"""

from __future__ import annotations

from orchestrator.providers.gcp.provider import GcpProvider

__all__ = ["GcpProvider"]
