"""`python -m bench.chaos`: random work while random processes die, then every
invariant checked (issue 27). See bench/README.md."""
