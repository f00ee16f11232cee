from .paired_ars import PairedARS

__all__ = ["PairedARS"]
