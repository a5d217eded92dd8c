"""The package's version, in a module of its own: ``harness`` itself imports the notebook API
lazily, and what records provenance must not import the package's top."""

__version__ = "0.1.0"
