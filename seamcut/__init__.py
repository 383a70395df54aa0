"""seamcut: a streaming gRPC server that finds clean cut points in audio.

Sub-packages: ``seamcut.v1`` (generated gRPC stubs), ``seamcut.server``,
``seamcut.client``, ``seamcut.bench``; ``seamcut.cli`` is the ``seamcut`` command.
"""

# The one home of the version: pyproject.toml reads it ([tool.setuptools.dynamic]), the
# server reports it to clients, and `seamcut --version` prints the installed one.
__version__ = "0.1.0"
