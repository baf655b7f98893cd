"""The ground floor that the recipe, the reader and the scripts share, beside data.py and model.py:
what a saved network must be and how it is read back safely (saved_network, onnx_network), every
write into an output folder (outputs), TensorFlow imported quietly (quiet_tensorflow), and CTC's
reading of a line model's frames (ctc). It imports nothing above it."""
