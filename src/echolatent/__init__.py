"""EchoLatent: cohort studies of the heart in echocardiography through the latent space of VAEs."""

__version__ = "0.1.0"

#: Label values of every mask handled by EchoLatent (CAMUS convention).
LABELS = {"background": 0, "lv": 1, "myo": 2, "la": 3}
#: Apical views, in the order EchoLatent stores them.
VIEWS = ("2CH", "4CH")
