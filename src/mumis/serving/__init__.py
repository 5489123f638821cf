"""Serving a deletion request: check every input, unlearn, write the checkpoint with its sealed audit manifest,
and verify a manifest later (the layer above ``bench``, which it borrows the method runner from)."""
from mumis.serving.audit import manifest_path, parse_ids, read_ids
from mumis.serving.requests import DeletionRequest, prepare_request, serve_request, verify_manifest

__all__ = ["DeletionRequest", "manifest_path", "parse_ids", "prepare_request", "read_ids", "serve_request",
           "verify_manifest"]
