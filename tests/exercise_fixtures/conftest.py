"""The wrong implementations here are inputs for the graders, not tests: never collect them."""

collect_ignore_glob = ["*/*.py"]
