"""Slow, obviously-correct reference loops, one module per sampler (named after it).

Each is written from its paper (and the authors' code where it exists), one row at a time with
Python lists, usually in float64. They exist only to check the vectorised samplers token for
token (greedy) or to give an exact output law; the tests import them from here. The contract
meta-test (tests/test_sampler_contract.py) requires a module here for every registered sampler.
"""
