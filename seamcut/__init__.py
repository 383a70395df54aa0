"""seamcut: a streaming gRPC server that finds clean cut points in audio.

Sub-packages: ``seamcut.v1`` (generated gRPC stubs), ``seamcut.server``,
``seamcut.client``, ``seamcut.bench``; ``seamcut.cli`` is the ``seamcut`` command.
"""

__version__ = "0.1.0"
