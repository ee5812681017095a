"""Code generated from ../inference.proto by ``python -m streamdag.protocol.generate``.

Do not edit: change the proto and regenerate.
"""
