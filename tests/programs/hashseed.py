"""Hash seed: set and dict order that depend on str/bytes hashing."""
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta",
         "iota", "kappa", "lambda", "mu", "nu", "xi", "omicron", "pi"]

words = set(WORDS)
print("set:", list(words))
print("frozenset:", list(frozenset(w.upper() for w in WORDS)))
print("dict built from set:", {w: len(w) for w in words})
print("set of bytes:", list({w.encode() for w in WORDS}))
print("set of tuples:", list({(w, i) for i, w in enumerate(WORDS)}))
print("hash str:", hash("x"), hash("retrace"))
print("hash bytes:", hash(b"x"))
