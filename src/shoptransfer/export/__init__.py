"""Exported models: ONNX export of the neural classifiers (:mod:`shoptransfer.export.onnx`,
which needs torch) and the runtime that scores them with onnxruntime alone
(:mod:`shoptransfer.export.runtime`, which never imports torch).

This package's ``__init__`` imports neither, so importing the runtime stays torch-free.
"""
