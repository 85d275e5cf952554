import os


def token():
    return os.urandom(8).hex()
