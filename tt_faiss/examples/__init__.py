"""Runnable examples (python -m tt_faiss.examples.toy --out DIR)."""
