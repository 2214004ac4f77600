"""Scoring trained models: built-in splits and outside image folders."""

from dalab.evaluation.evaluate import accuracy, confusion_counts, count_correct, evaluate, predict

__all__ = ["accuracy", "confusion_counts", "count_correct", "evaluate", "predict"]
