"""`python -m rarenet.baseline` (and, from a source checkout, `python -m baseline`) is
the `rarenet` command."""

from rarenet.baseline.cli import main

if __name__ == "__main__":
    main()
