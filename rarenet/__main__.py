"""`python -m rarenet` is the `rarenet` command."""

from rarenet.baseline.cli import main

if __name__ == "__main__":
    main()
