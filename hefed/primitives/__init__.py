"""The fenced low level ("hazmat"): Paillier on raw integers, DJN encryption, slot packing, exact algebra.

Layer 1 of hefed. Nothing in here knows about factories, files, data frames or bundle kinds;
misusing it (a plaintext outside its slot's bounds, a key without its checks) is possible here
and nowhere above. The safe recipes are :func:`hefed.encrypt_table`, :func:`hefed.aggregate`,
:func:`hefed.decrypt_bundle` and :func:`hefed.solve`.

* :mod:`~hefed.primitives.paillier` — phe-compatible raw encryption, decryption, ciphertext checks;
* :mod:`~hefed.primitives.djn` — Damgård–Jurik–Nielsen fixed-base encryption (short exponents);
* :mod:`~hefed.primitives.encryption` — batches of either, on every core;
* :mod:`~hefed.primitives.packing` — many integers per plaintext with guard bits;
* :mod:`~hefed.primitives.exactgram` — the exact integer Gram matrix at BLAS speed (error-free slicing);
* :mod:`~hefed.primitives.exactsolve` — exact linear systems and inverses over the rationals.
* :mod:`~hefed.primitives.discrete_gaussian` — exact discrete Gaussian and Laplace samplers from :mod:`secrets`
  (the noise of a differentially private release).
"""
