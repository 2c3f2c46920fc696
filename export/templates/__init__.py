"""Files copied into the model repository (`model.py`: the python-backend runner of --target cpu)."""
