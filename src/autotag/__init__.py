"""autotag: continuous photo auto-tagging on Apache Storm (shared code for CLI, spouts and bolts)."""

__version__ = "0.1.0"
