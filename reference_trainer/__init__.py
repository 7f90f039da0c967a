"""Reference CQL/BRAC trainer (PyTorch) with the remedies the workflow paper names. Extra: `trainer`."""
