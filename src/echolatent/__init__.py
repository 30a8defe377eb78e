"""EchoLatent: cohort studies of the heart in echocardiography through the latent space of VAEs."""

__version__ = "0.1.0"

#: Apical views, in the order EchoLatent stores them.
VIEWS = ("2CH", "4CH")
