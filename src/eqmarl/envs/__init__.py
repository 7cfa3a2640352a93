"""Environments: batched multi-agent tasks behind one interface (:mod:`eqmarl.core.env`).

:func:`eqmarl.build.make_env` builds one from its config.
"""
