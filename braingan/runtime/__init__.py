"""Where programs run: device mesh, processes, precision, host memory, compilation cache.

Nothing here knows about GANs or classifiers; `braingan.train` and the entry points use it.
"""
