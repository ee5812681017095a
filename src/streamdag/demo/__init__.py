"""The demo that `make demo` runs: a small pipeline of models over clinical sentences."""

from streamdag.demo.run import DemoReport, run_demo

__all__ = ["DemoReport", "run_demo"]
