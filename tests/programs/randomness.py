"""Randomness: OS entropy, the default random instance, fresh instances,
secrets, uuids, and a C function (sorted) calling back into Python."""
import os
import random
import secrets
import uuid

print("os.urandom:", os.urandom(16).hex())
print("random.random:", repr(random.random()))
print("random.randint:", random.randint(1, 10**12))
print("random.choice:", random.choice("abcdefghijklmnopqrstuvwxyz"))
deck = list(range(20))
random.shuffle(deck)
print("random.shuffle:", deck)
print("random.sample:", random.sample(range(1000), 5))
print("random.getrandbits:", random.getrandbits(96))
print("random.gauss:", repr(random.gauss(0.0, 1.0)))
random.seed()  # reseed the default instance from OS entropy
print("after seed():", repr(random.random()))
fresh = random.Random()  # unseeded instance: seeded from OS entropy in C
print("Random().random:", repr(fresh.random()))
print("Random().getrandbits:", fresh.getrandbits(64))
print("SystemRandom:", repr(random.SystemRandom().random()))
print("secrets.token_hex:", secrets.token_hex(16))
print("secrets.token_urlsafe:", secrets.token_urlsafe(12))
print("secrets.randbelow:", secrets.randbelow(10**9))
print("uuid4:", uuid.uuid4())
print("uuid1:", uuid.uuid1())
if hasattr(os, "getrandom"):
    print("os.getrandom:", os.getrandom(16).hex())
print("sorted by random key:", sorted(range(20), key=lambda x: random.random()))
