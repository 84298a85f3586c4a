"""``python -m ngteach`` runs the command line."""
from .cli import main

main()
