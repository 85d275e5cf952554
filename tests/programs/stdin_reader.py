"""Stdin: input() then sys.stdin.read(), fed through a pipe by the test."""
import sys

name = input("name? ")
print("input:", repr(name))
rest = sys.stdin.read()
print("stdin.read:", repr(rest))
print("lines:", len(rest.splitlines()))
