"""``python -m remask``: the ``remask`` command line (so that ``torchrun -m remask sweep ...`` works)."""

from remask.cli import main

if __name__ == "__main__":
    main(prog_name="remask")
