# expect: mechanism-class
# no Mechanism subclass at all
import math


def select(proposals, history, rng):
    return proposals[0]
