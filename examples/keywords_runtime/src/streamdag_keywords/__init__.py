"""An example streamdag runtime, installed as a plug-in: ``runtime: keywords``."""

from streamdag_keywords.runtime import KeywordModel, KeywordSpec

__all__ = ["KeywordModel", "KeywordSpec"]
