"""nbval runs the Korean 00-03 in `make test` (their code and outputs are the English ones, so the
English runs already cover 04-08; see notebooks/ko/README.md)."""

collect_ignore_glob = ["0[4-9]_*.ipynb"]
