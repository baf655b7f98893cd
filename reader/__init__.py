"""The handwriting reader: a person's photo, scan or drawing in, the digit or number a trained
model reads in it out, with whether it is sure. predict.py and serve.py are its scripts.

    from reader import load_classifier, mnist_style_digit, read_digits, read_image_file, read_number
    model = load_classifier("artifacts/model.keras")       # or an export's model.onnx, without TensorFlow
    digit = mnist_style_digit(read_image_file(Path("seven.png")))           # uint8 (28, 28)
    [seven] = read_digits(model.probabilities_of, [digit], model.threshold)  # {"digit": 7, ...}
    number, _ = read_number(model.probabilities_of, read_image_file(Path("zip.jpg")), model.threshold)

Its modules, in the order an image passes through them:
- page: the image's bytes decoded, and its ink taken off the page (paper, printed lines, specks);
- division: a number's ink divided into the digits it may be made of;
- reading: the model's probabilities as a reading (digit, likeliest digits, not sure, not a
  digit), and the division of a number it is surest of;
- sequence: a number read as a whole line by a line model;
- classifier: a trained model to read with, from a .keras or .onnx file;
- deadline: when a reading gives up (it took too long, or nobody waits for it any more);
- browser: the page that reads in the browser (its config, its runtime, the folder export.py writes).
The reader builds on the ground floor it shares with the trainer (data.py's MNIST form and
normalization, ground/'s safe loading and calibrated threshold) and imports nothing of the recipe.
"""

from ground.saved_network import ModelError
from reader.classifier import Classifier, load_classifier
from reader.page import ImageError, mnist_style_digit, read_image, read_image_file
from reader.reading import read_digits, read_number

__all__ = [
    "Classifier",
    "ImageError",
    "ModelError",
    "load_classifier",
    "mnist_style_digit",
    "read_digits",
    "read_image",
    "read_image_file",
    "read_number",
]
