"""pgsched: a distributed task scheduler where PostgreSQL is the only moving part."""

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what the lazy __getattr__ below gives, for the type checker
    from pgsched.client import Client as Client

try:
    __version__ = version("pgsched")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"


def __getattr__(name: str) -> object:
    # Lazy: `import pgsched` stays cheap for the CLI; `from pgsched import Client` works.
    if name == "Client":
        from pgsched.client import Client

        return Client
    raise AttributeError(f"module 'pgsched' has no attribute {name!r}")
