"""Language-model providers behind one small streaming interface (see base.py)."""
