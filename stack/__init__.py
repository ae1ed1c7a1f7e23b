"""Running the whole system locally: Redis, the stand-ins and the Procfile.

`python -m stack run` starts everything `make run` needs and stops it in order;
`python -m stack test` runs pytest next to a Redis it can rely on.
"""
