"""Errors a user can act on. The CLI prints their message as one line and exits non-zero."""


class AutotagError(Exception):
    """Base class: a failure with a one-line, user-facing reason."""


class ImageError(AutotagError):
    """A photo that cannot be tagged (corrupt, hostile, unsupported); the reason is stored."""


class ServiceError(AutotagError):
    """A service (ZooKeeper, Nimbus, Redis, Postgres...) is missing, down or misconfigured."""


class ModelError(AutotagError):
    """A model bundle that is missing, corrupt or fails its checksum."""


class ConfigError(AutotagError):
    """A setting (config.json or an AUTOTAG_* variable) that is unknown or has a bad value;
    the message names the key and where it came from."""
