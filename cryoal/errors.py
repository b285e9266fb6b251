"""Typed errors raised by cryoal.

Every error a user can cause derives from :class:`CryoalError`. The command line turns
any of them into one line on stderr and exit code 2 (``--debug`` shows the traceback).
Messages say what was wrong, where (file, row, id) and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "CryoalError",
    "CryoalWarning",
    "EmptyPoolError",
    "InvalidLabelsError",
    "InvalidParticlesError",
    "InvalidVolumeError",
    "ManifestError",
    "MissingDependencyError",
    "PoolChangedError",
    "PoolExhaustedError",
    "PoolManifestError",
    "ProjectError",
    "ProjectLockedError",
    "StorageError",
]


class CryoalError(Exception):
    """Base class of every error cryoal raises on purpose."""


class InvalidVolumeError(CryoalError, ValueError):
    """A volume file is unreadable, malformed, or inconsistent with its pool."""


class InvalidLabelsError(CryoalError, ValueError):
    """A labels, picks or predictions table is malformed or does not match the pool."""


class InvalidParticlesError(InvalidLabelsError):
    """A particle list (RELION/Dynamo/copick/CSV coordinates) is malformed or inconsistent.

    A subclass of :class:`InvalidLabelsError`, so code that already reports bad label
    tables reports bad particle files the same way.
    """


class ManifestError(CryoalError, ValueError):
    """A dataset manifest does not follow the schema in :mod:`cryoal.manifests`."""


class PoolManifestError(InvalidVolumeError):
    """A saved pool's manifest is missing, corrupt, truncated or of an unknown version/kind."""


class PoolChangedError(InvalidVolumeError):
    """An item of a saved pool vanished or changed since the pool was saved."""


class CheckpointError(CryoalError, ValueError):
    """A model checkpoint is corrupt or incompatible with the data it is applied to."""


class ConfigError(CryoalError, ValueError):
    """An option or a combination of options is invalid."""


class EmptyPoolError(CryoalError, ValueError):
    """A pool holds no volumes (or no unlabelled volumes where some are required)."""


class PoolExhaustedError(CryoalError, ValueError):
    """More samples were requested than the unlabelled pool holds."""


class ProjectError(CryoalError):
    """An active-learning project directory is missing, damaged or not writable."""


class ProjectLockedError(ProjectError):
    """Another process is writing to the same project."""


class StorageError(CryoalError, OSError):
    """Writing failed for a reason of the storage: disk full, quota, file-size limit,
    read-only file system. The file being written is named; what was there before is
    kept (writes are atomic), so re-running after freeing space resumes."""


class MissingDependencyError(CryoalError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class CryoalWarning(UserWarning):
    """Something was odd but cryoal carried on with a documented default.

    Example: an MRC header with a zero voxel size (1.0 Å is used instead). Silence it with
    ``warnings.filterwarnings("ignore", category=CryoalWarning)``.
    """
