"""recur.core: the contracts every level shares (records, Loop, driver, budget, trace, executor, hooks).

core never imports levels, tasks or the mechanism store by name: they plug in through entry points.
"""
