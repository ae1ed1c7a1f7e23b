"""A password hasher for the test process: Django's PBKDF2 with few iterations.

Its hashes are ordinary `pbkdf2_sha256` ones (the iterations are in the hash), so
the web processes of the end-to-end tests verify them with their default hasher; a
login here does not rehash them at full strength (a second of CPU each, and the
tests log in a lot). Production hashing is untouched: only the tests name it.
"""

from django.contrib.auth.hashers import PBKDF2PasswordHasher


class QuickPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    iterations = 1000
