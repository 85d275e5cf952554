"""Exceptions raised and caught inside the standard library (re's cache and
parser), then raised in the program's own code."""
import re


def parse(text):
    re.compile(f"[a-z]+{text}?")    # re raises and catches KeyError and IndexError inside
    return int(text)                # PARSE


for text in ["1", "x", "3", "y"]:
    try:
        parse(text)
    except ValueError:
        print("bad", text)
