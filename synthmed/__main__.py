"""`python -m synthmed ...`: the `synthmed` command, for an environment whose scripts folder is
not on PATH (or to be sure which Python runs it)."""

from synthmed.cli import main

if __name__ == "__main__":
    main()
