"""Text-quality functions: instruction cleaning, final answers, near-duplicate removal."""

from .answers import extract_boxed, majority_answer, normalize_answer, split_reasoning
from .cleaning import Cleaned, clean_instruction, normalize_for_dedup
from .neardup import NearDuplicate, find_near_duplicates, minhash_signatures

__all__ = [
    "Cleaned",
    "NearDuplicate",
    "clean_instruction",
    "extract_boxed",
    "find_near_duplicates",
    "majority_answer",
    "minhash_signatures",
    "normalize_answer",
    "normalize_for_dedup",
    "split_reasoning",
]
