"""Readers and writers of echocardiography sequences and cohort layouts."""

from echolatent.io.errors import InputError

__all__ = ["InputError"]
