"""``python -m lightning_nas`` runs the command line."""

from lightning_nas.cli import main

if __name__ == "__main__":
    main()
