"""``python -m fake_eks`` = the ``fake-eks`` console script."""

from fake_eks.cli import main

main()
