"""Text preparation shared by training and the pipeline's ``normalize`` step.

A note becomes lower-case clauses: section headers are dropped (dictated notes often have
none, so the section model learns from content alone), slash abbreviations are spelled
out (the tokenizer would drop ``r/o`` as two one-letter words), and the text is split at
line ends, sentence ends, list commas, semicolons and "but". Training and serving run
this same code, so the models see at serving time what they saw in training.
"""

from __future__ import annotations

import re

__all__ = ["MAX_CLAUSES", "clauses", "demographics"]

MAX_CLAUSES = 48  # slots per document in the clause tensors; the rest are padding ("")

# A header opens a line or a sentence: "assessment:", "a/p:", "past medical history:".
_HEADER = re.compile(r"(?:^|(?<=[.;] ))[ \t]*[a-z][a-z /&]{0,40}:[ \t]*", re.MULTILINE)
_SPLIT = re.compile(r"\n|;\s|,\s|\.(?:\s|$)|\s+but\s+")
_ABBREVIATIONS = {
    "r/o": "rule out",
    "h/o": "history of",
    "c/o": "complains of",
    "s/p": "status post",
    "w/": "with ",
}
_ABBREVIATION = re.compile("|".join(re.escape(a) for a in _ABBREVIATIONS))
_AGE_SEX = re.compile(r"\b(\d{2,3})[- ]year[- ]old (male|female|man|woman)\b")


def clauses(note: str) -> list[str]:
    """The note's clauses in order, lower-case, single-spaced, without headers."""
    text = _HEADER.sub("", note.lower())
    text = _ABBREVIATION.sub(lambda m: _ABBREVIATIONS[m.group(0)], text)
    parts = (" ".join(part.split()) for part in _SPLIT.split(text))
    return [part for part in parts if part]


def demographics(note: str) -> tuple[int, str]:
    """Age and sex ("F", "M", or "U" when the note does not say) from "72 year old male"."""
    match = _AGE_SEX.search(note.lower())
    if match is None:
        return 0, "U"
    sex = "M" if match.group(2) in ("male", "man") else "F"
    return int(match.group(1)), sex
