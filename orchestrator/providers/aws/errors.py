"""The AWS provider's error helpers: those of the AWS adaptor (``orchestrator.adaptors.aws``).

Every call site names the IAM action it needs (``s3:PutBucketVersioning``), so an operator
reading "access denied" knows which permission to grant on which site; "not found" is not an
error for observe or delete (``lookup`` returns None). The mapping itself is defined once, in
the adaptor, which the S3 state store uses too; this module only gives the provider's modules
one place to import it from.
"""

from __future__ import annotations

from orchestrator.adaptors.aws import (
    ACCESS_DENIED_CODES,
    CREDENTIAL_CODES,
    NOT_FOUND_CODES,
    TRANSIENT_CODES,
    call,
    error_code,
    is_not_found,
    is_sdk_error,
    lookup,
    map_aws_error,
    pages,
)

__all__ = [
    "ACCESS_DENIED_CODES",
    "CREDENTIAL_CODES",
    "NOT_FOUND_CODES",
    "TRANSIENT_CODES",
    "call",
    "error_code",
    "is_not_found",
    "is_sdk_error",
    "lookup",
    "map_aws_error",
    "pages",
]
