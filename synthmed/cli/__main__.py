"""`python -m synthmed.cli ...`: the same as `python -m synthmed ...` and `synthmed ...`."""

from synthmed.cli import main

if __name__ == "__main__":
    main()
