"""The embedded local PostgreSQL server: a cluster under ``$PGSCHED_HOME`` (default
``./.pgsched``), and throwaway servers for tests and benchmarks.

- ``binaries``: where the server binaries come from, and a verified copy the server user can run
- ``files``: directories and files root can trust (never through a link) and the server user
  can reach
- ``process``: running the server's programs as the unprivileged system user ``pgsched`` when
  run as root; loopback ports
- ``auth``: SCRAM passwords on 127.0.0.1 only, kept in 0600 libpq password files
- ``cluster``: the cluster under the home: made, started, stopped, described
- ``ephemeral``: ``EphemeralServer``, a child process that dies with its parent
"""

from pgsched.server.auth import password_file
from pgsched.server.binaries import MANIFEST, SOURCE, runnable_bin_dir, server_version
from pgsched.server.cluster import Cluster
from pgsched.server.ephemeral import EphemeralServer
from pgsched.server.files import SYSTEM_DIR, open_private_log
from pgsched.server.process import SYSTEM_USER, die_with_parent, ensure_system_user, free_port

__all__ = [
    "MANIFEST",
    "SOURCE",
    "SYSTEM_DIR",
    "SYSTEM_USER",
    "Cluster",
    "EphemeralServer",
    "die_with_parent",
    "ensure_system_user",
    "free_port",
    "open_private_log",
    "password_file",
    "runnable_bin_dir",
    "server_version",
]
