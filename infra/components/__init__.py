"""Pulumi components of the Sovereign infrastructure (pulumi imports live only in infra/)."""
