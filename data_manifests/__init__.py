"""Bundled dataset manifests (YAML), read through :mod:`cryoal.manifests`."""
