"""Stand-ins only the tests use: a fake inclusion judge, a judge that strays outside its labels at first,
a tiny judge model and a real vLLM server on the CPU.

``pythonpath = ["tests"]`` in pyproject's pytest settings makes this package importable as ``support``
(``tests`` itself is not a package: verl and TransferQueue install one under that name).
"""
