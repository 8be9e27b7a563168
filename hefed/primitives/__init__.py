"""Low-level arithmetic: Paillier operations on raw integers, slot packing, exact linear algebra.

Nothing in here knows about factories, files or data frames. The modules above
(``hefed.encrypt``, ``hefed.aggregate``, ``hefed.decrypt``, ``hefed.solve``)
are the safe public layer built on these primitives.
"""
