"""`python -m baseline` is the `rarenet` command."""

from baseline.cli import main

if __name__ == "__main__":
    main()
