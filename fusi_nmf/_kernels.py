"""Jupyter kernels that several runs can start at once without colliding.

With the default TCP transport, jupyter_client picks five free ports by binding and
releasing them, then the kernel binds them again: when many kernels start at the same
moment (the book's chapters side by side, sweep ``--jobs``, pytest-xdist workers) another
process can take a port in between and the kernel dies with "Address already in use".
:class:`IPCKernelManager` talks to the kernel over Unix-domain sockets instead, at a path
made unique for every kernel (never the shared default ``kernel-ipc`` in the working
folder), in the temporary folder; jupyter_client removes the socket files at shutdown.
"""

from __future__ import annotations

import os
import tempfile
import uuid

from jupyter_client.manager import AsyncKernelManager
from traitlets import default


class IPCKernelManager(AsyncKernelManager):
    """An nbclient/papermill kernel manager on the ``ipc`` transport with private sockets."""

    @default("transport")
    def _default_transport(self) -> str:
        return "ipc" if os.name == "posix" else "tcp"

    @default("ip")
    def _default_ip(self) -> str:
        if self.transport != "ipc":
            return super()._ip_default()
        # short (Unix socket paths are limited to ~107 bytes) and unique per kernel
        return os.path.join(tempfile.gettempdir(), f"fusi-nmf-{uuid.uuid4().hex[:16]}-ipc")


#: How the package starts every kernel through papermill (book chapters, sweep runs):
#: on private Unix sockets, and with the kernel's own log silenced (ipykernel >= 7 logs a
#: transport notice at every start and sometimes a harmless "KeyboardInterrupt caught"
#: at shutdown; cell errors reach the caller through the executed notebook, not this log).
KERNEL_OPTIONS = {
    "kernel_manager_class": IPCKernelManager,
    "extra_arguments": ["--IPKernelApp.log_level=CRITICAL"],
}
