"""Data shipped with the cloud package (the PJM RegD-type regulation signal, 2-s spacing)."""
