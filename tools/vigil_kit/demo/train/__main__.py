"""`python3 -m vigil_kit.demo.train`: see cli.py."""

from .cli import main

main()
