"""The evidence tools: what a user reads to trust (or not) a claim that the outer levels help.

``ablate`` (the paper's A-E table under one harness), ``heldout`` (re-checking a promotion on seeds that did
not decide it, and on another task), ``mech_eval`` (judging one mechanism as level 2 would), ``report`` and
``found`` (plots, HTML and "what level 2 found"). They run the loops in levels/ and never change them: levels/
does not import this package.
"""
