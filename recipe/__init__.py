"""The training recipe that train.py, tune.py and bench/ fit networks through, split by job:
config (TrainConfig and its bounds), settings (a run's settings, each architecture's defaults, the
flags), fit (compile, the input pipeline, `fit` and `train`), callbacks (progress, history, stop on
a signal, backup and resume), devices (CPU flags, precision, strategy), augmentation and not_digits
(what the images vary in, and the images that are not digits), lines (numbers composed for the line
model), multiworker (training over several machines), run (one run of train.py, resumed and
recorded) and search (tune.py's space and oracle). It stands on the ground floor only."""
