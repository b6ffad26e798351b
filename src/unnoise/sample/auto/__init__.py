"""`auto`: a solver and grid calibrated on the model itself for a budget of model calls."""
