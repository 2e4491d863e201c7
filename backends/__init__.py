"""I/O adapters for smtp_core: blocking sockets, asyncio, trio and anyio.

The servers, clients and the ``smtp-core`` command arrive with the backends
work; today this package holds nothing but this note, so that ``backends``
can be installed and type-checked from the start.
"""
