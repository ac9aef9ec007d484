"""`synthmed` command line: a thin layer over the Python API.

Each command lives in its own module and registers itself on `app`. `main` turns user errors
(`SynthmedError`) into one line on stderr and exit code 2, with no traceback.
"""

from __future__ import annotations

import os
import sys

from synthmed.cli.app import app
from synthmed.errors import SynthmedError

# Importing a command module registers its command on `app`.
from synthmed.cli import phantoms as _phantoms  # noqa: F401,E402
from synthmed.cli import ingest as _ingest  # noqa: F401,E402
from synthmed.cli import inspect as _inspect  # noqa: F401,E402
from synthmed.cli import train as _train  # noqa: F401,E402
from synthmed.cli import sample as _sample  # noqa: F401,E402
from synthmed.cli import generate as _generate  # noqa: F401,E402
from synthmed.cli import evaluate as _evaluate  # noqa: F401,E402
from synthmed.cli import audit as _audit  # noqa: F401,E402
from synthmed.cli import demo as _demo  # noqa: F401,E402
from synthmed.cli import verify as _verify  # noqa: F401,E402
from synthmed.cli import release as _release  # noqa: F401,E402
from synthmed.cli import configs as _configs  # noqa: F401,E402
from synthmed.cli import identity as _identity  # noqa: F401,E402
from synthmed.cli import canaries as _canaries  # noqa: F401,E402


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, standalone_mode=True)
    except SynthmedError as err:
        from synthmed.cli.options import FLAGS

        # the library names its arguments (`key=`); here they are the flags a user typed
        print(f"synthmed: error: {err.message(FLAGS)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("synthmed: interrupted; files already written are complete, partial ones were removed",
              file=sys.stderr)
        sys.exit(130)
    except Exception as err:  # noqa: BLE001
        if os.environ.get("SYNTHMED_DEBUG"):
            raise
        print(f"synthmed: internal error: {type(err).__name__}: {err} "
              "(this is a bug; rerun with SYNTHMED_DEBUG=1 for a traceback and report it)",
              file=sys.stderr)
        sys.exit(1)


__all__ = ["app", "main"]
